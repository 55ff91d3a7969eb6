#!/usr/bin/env bash
# Run one operator command inside the VPC as a one-off ECS task (the `ops` task definition, or
# `release` for catalog load), wait for it, print its log and exit with its exit status.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ops/scripts/ops-task.sh [options] -- COMMAND...

Runs COMMAND in a one-off Fargate task in the private subnets, with the database, the seat
cluster and the queues in reach, waits for it to stop, prints its log and exits with its status.
  ops/scripts/ops-task.sh -- flask --app web dlq list
  ops/scripts/ops-task.sh -- flask --app web dlq redrive
  ops/scripts/ops-task.sh -- flask --app web seats rebuild --event Event1
  ops/scripts/ops-task.sh -- flask --app web seats reconcile
  ops/scripts/ops-task.sh --task release -- flask --app web catalog load

Options:
  -t, --task NAME       ops (default: its role reads the queues and moves dead letters) or
                        release (migrations and catalog load: no AWS API)
  -d, --tf-dir DIR      Terraform directory to read the outputs from (default: ops/terraform)
  -h, --help            show this help

Needs: aws, jq, terraform, and AWS credentials allowed to run tasks and read their logs.
USAGE
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=ops/scripts/lib.sh
source "${root}/ops/scripts/lib.sh"

tf_dir="${root}/ops/terraform"
task=ops

while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    -t | --task) [[ $# -ge 2 ]] || die "$1 needs ops or release"; task=$2; shift 2 ;;
    -d | --tf-dir) [[ $# -ge 2 ]] || die "$1 needs a directory"; tf_dir=$2; shift 2 ;;
    --) shift; break ;;
    *) usage >&2; die "unknown argument: $1 (the command goes after --)" ;;
  esac
done
[[ $# -gt 0 ]] || { usage >&2; die "no command given"; }
[[ $task == ops || $task == release ]] || die "--task must be ops or release, not ${task}"

require aws "install the AWS CLI (https://aws.amazon.com/cli/)"
require jq "apt-get install jq"
require terraform "install Terraform >= 1.6 (https://developer.hashicorp.com/terraform/install)"
require_aws_credentials
load_outputs "$tf_dir"

export AWS_DEFAULT_REGION
AWS_DEFAULT_REGION=$(output aws_region)
cluster=$(output ecs_cluster_name)
family=$(output "${task}_task_definition")
log_group=$(output "${task}_log_group")
subnets=$(output private_subnet_ids | paste -sd, -)
security_group=$(output ops_security_group_id)

# The container runs ["bash", "-c", <command>], as every task definition does: each argument is
# quoted once, so the task runs exactly the words given here.
printf -v command '%q ' "$@"
overrides=$(jq -cn --arg name "$task" --arg command "${command% }" \
  '{containerOverrides: [{name: $name, command: ["bash", "-c", $command]}]}')

info "running in ${family}: $*"
run=$(aws ecs run-task --cluster "$cluster" --task-definition "$family" \
  --launch-type FARGATE --started-by ops-task --overrides "$overrides" \
  --network-configuration "awsvpcConfiguration={subnets=[${subnets}],securityGroups=[${security_group}],assignPublicIp=DISABLED}" \
  --output json)
task_arn=$(jq -r '.tasks[0].taskArn // empty' <<<"$run")
[[ -n $task_arn ]] || die "the task did not start: $(jq -c '.failures' <<<"$run")"
task_id=${task_arn##*/}
info "waiting for ${task_id} to stop"
aws ecs wait tasks-stopped --cluster "$cluster" --tasks "$task_arn" >/dev/null
result=$(aws ecs describe-tasks --cluster "$cluster" --tasks "$task_arn" --output json)
exit_code=$(jq -r '.tasks[0].containers[0].exitCode // "none"' <<<"$result")

# awslogs stream: <stream prefix = container name>/<container name>/<task id>
aws logs get-log-events --log-group-name "$log_group" \
  --log-stream-name "${task}/${task}/${task_id}" --start-from-head \
  --query 'events[].message' --output text | tr '\t' '\n' || info "no log yet: aws logs tail ${log_group} --since 30m"

if [[ $exit_code != 0 ]]; then
  reason=$(jq -r '.tasks[0].stoppedReason // "unknown"' <<<"$result")
  info "${task_id} failed (exit code ${exit_code}, ${reason})"
  [[ $exit_code =~ ^[0-9]+$ ]] && exit "$exit_code"
  exit 1
fi
info "${task_id} done"
