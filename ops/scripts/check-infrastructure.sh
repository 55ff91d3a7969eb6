#!/usr/bin/env bash
# Check a deployment: ECS service states, ALB target health, the three health endpoints through
# the ALB, and the depths of the ticket queue and its DLQ. Exit status 1 when anything is wrong.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ops/scripts/check-infrastructure.sh [options]

Reads the Terraform outputs and checks:
  - every ECS service is ACTIVE, runs as many tasks as it wants, and its rollout did not fail;
  - every ALB target group (purchase, query, events) has healthy targets and no unhealthy one;
  - GET /purchase/health, /query/health and /events/health answer 200 through the ALB;
  - the ticket queue's depth (reported) and the DLQ is empty.
Prints one line per check; exits 1 if any check failed.

Options:
  -d, --tf-dir DIR      Terraform directory to read the outputs from (default: ops/terraform)
  -u, --base-url URL    base URL of the API (default: Terraform output base_url); use your
                        domain when the ALB serves HTTPS with a certificate for it
  -h, --help            show this help

Needs: aws, jq, terraform, curl, and AWS credentials (AWS_PROFILE, SSO or environment).
USAGE
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=ops/scripts/lib.sh
source "${root}/ops/scripts/lib.sh"

tf_dir="${root}/ops/terraform"
base_url=""

while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    -d | --tf-dir) [[ $# -ge 2 ]] || die "$1 needs a directory"; tf_dir=$2; shift 2 ;;
    -u | --base-url) [[ $# -ge 2 ]] || die "$1 needs a URL"; base_url=$2; shift 2 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

require aws "install the AWS CLI (https://aws.amazon.com/cli/)"
require jq "apt-get install jq"
require terraform "install Terraform >= 1.6 (https://developer.hashicorp.com/terraform/install)"
require curl "apt-get install curl"
require_aws_credentials
load_outputs "$tf_dir"

export AWS_DEFAULT_REGION
AWS_DEFAULT_REGION=$(output aws_region)
cluster=$(output ecs_cluster_name)
mapfile -t services < <(output ecs_services)
queue_url=$(output ticket_queue_url)
dlq_url=$(output ticket_dlq_url)
[[ -n $base_url ]] || base_url=$(output base_url)
base_url=${base_url%/}

failures=0
ok() { printf '  ok    %s\n' "$*"; }
bad() {
  printf '  FAIL  %s\n' "$*"
  failures=$((failures + 1))
}

echo "ECS services (cluster ${cluster})"
described=$(aws ecs describe-services --cluster "$cluster" --services "${services[@]}" --output json)
for service in "${services[@]}"; do
  line=$(jq -r --arg s "$service" '
    .services[] | select(.serviceName == $s) |
    [.status, .desiredCount, .runningCount, .pendingCount,
     ((.deployments[] | select(.status == "PRIMARY") | .rolloutState) // "UNKNOWN"),
     (.deployments | length)] | @tsv' <<<"$described")
  if [[ -z $line ]]; then
    bad "${service}: not found ($(jq -c --arg s "$service" '[.failures[] | select(.arn | endswith($s)) | .reason]' <<<"$described"))"
    continue
  fi
  IFS=$'\t' read -r status desired running pending rollout deployments <<<"$line"
  summary="${service}: ${status}, ${running}/${desired} running, ${pending} pending, rollout ${rollout}, ${deployments} deployment(s)"
  if [[ $status == ACTIVE && $running -ge $desired && $desired -gt 0 && $rollout != FAILED ]]; then
    ok "$summary"
  else
    bad "$summary"
  fi
done

echo "ALB target groups"
while IFS=$'\t' read -r name arn; do
  health=$(aws elbv2 describe-target-health --target-group-arn "$arn" --output json)
  healthy=$(jq '[.TargetHealthDescriptions[] | select(.TargetHealth.State == "healthy")] | length' <<<"$health")
  total=$(jq '.TargetHealthDescriptions | length' <<<"$health")
  unhealthy=$(jq -r '[.TargetHealthDescriptions[] | select(.TargetHealth.State == "unhealthy") | .TargetHealth.Description] | unique | join("; ")' <<<"$health")
  if [[ $healthy -gt 0 && -z $unhealthy ]]; then
    ok "${name}: ${healthy}/${total} healthy"
  else
    bad "${name}: ${healthy}/${total} healthy${unhealthy:+ (${unhealthy})}"
  fi
done < <(jq -r '.target_group_arns.value | to_entries[] | [.key, .value] | @tsv' <<<"$TF_OUTPUTS")

echo "Health endpoints (${base_url})"
for path in /purchase/health /query/health /events/health; do
  body_file=$(mktemp)
  code=$(curl --silent --show-error --max-time 10 --output "$body_file" --write-out '%{http_code}' \
    "${base_url}${path}" 2>&1) || code="unreachable: ${code}"
  body=$(head -c 300 "$body_file")
  rm -f "$body_file"
  if [[ $code == 200 ]]; then
    ok "${path}: 200 ${body}"
  else
    bad "${path}: ${code} ${body}"
  fi
done

echo "Queues"
depths() {
  aws sqs get-queue-attributes --queue-url "$1" \
    --attribute-names ApproximateNumberOfMessages ApproximateNumberOfMessagesNotVisible \
    --query 'Attributes.[ApproximateNumberOfMessages,ApproximateNumberOfMessagesNotVisible]' \
    --output text
}
read -r visible in_flight < <(depths "$queue_url")
ok "${queue_url##*/}: ${visible} waiting, ${in_flight} in flight"
read -r dead dead_in_flight < <(depths "$dlq_url")
if [[ $dead -eq 0 && $dead_in_flight -eq 0 ]]; then
  ok "${dlq_url##*/}: empty"
else
  bad "${dlq_url##*/}: ${dead} dead letters (+${dead_in_flight} in flight): flask --app web dlq list (README)"
fi

if [[ $failures -gt 0 ]]; then
  echo "${failures} check(s) failed"
  exit 1
fi
echo "all checks passed"
