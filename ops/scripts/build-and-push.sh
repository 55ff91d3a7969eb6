#!/usr/bin/env bash
# Build the image, push it to ECR under the git SHA, move the deploy tag to it, run the `release`
# task (database users, then alembic upgrade head) and wait for it, then force a new deployment of every ECS service.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ops/scripts/build-and-push.sh [options]

Builds the image of the current commit, pushes it to the ECR repository created by
`terraform apply` under the git SHA, moves the deploy tag (Terraform output image_tag, "live")
to it, runs the one-off `release` task (database migrations) and waits for it to succeed, then
forces a new deployment of every ECS service (purchase, query, events, relay, worker, flower)
and waits until they are stable.

Options:
  -d, --tf-dir DIR      Terraform directory to read the outputs from (default: ops/terraform)
  -p, --promote SHA     no build: deploy the already pushed image SHA (a rollback, for instance)
      --allow-dirty     build even with uncommitted changes (the image then is not that commit)
      --skip-release    do not run the release task (no migration in this change)
      --no-wait         do not wait for the services to become stable
  -h, --help            show this help

Needs: aws (CLI v2 or v1), docker with a running engine (not for --promote), jq, terraform, git,
and AWS credentials (AWS_PROFILE, SSO or environment). The region comes from the Terraform output.
USAGE
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=ops/scripts/lib.sh
source "${root}/ops/scripts/lib.sh"

tf_dir="${root}/ops/terraform"
promote=""
allow_dirty=false
run_release=true
wait_stable=true

while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    -d | --tf-dir) [[ $# -ge 2 ]] || die "$1 needs a directory"; tf_dir=$2; shift 2 ;;
    -p | --promote) [[ $# -ge 2 ]] || die "$1 needs an image SHA"; promote=$2; shift 2 ;;
    --allow-dirty) allow_dirty=true; shift ;;
    --skip-release) run_release=false; shift ;;
    --no-wait) wait_stable=false; shift ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

require aws "install the AWS CLI (https://aws.amazon.com/cli/)"
require jq "apt-get install jq"
require terraform "install Terraform >= 1.6 (https://developer.hashicorp.com/terraform/install)"
require git "apt-get install git"
if [[ -z $promote ]]; then
  require docker "install Docker (https://docs.docker.com/engine/install/)"
  docker info >/dev/null 2>&1 || die "the Docker engine is not running or not reachable (docker info failed)"
fi
require_aws_credentials
load_outputs "$tf_dir"

region=$(output aws_region)
repository_url=$(output ecr_repository_url)
registry=${repository_url%%/*}
repository=${repository_url#*/}
deploy_tag=$(output image_tag)
cluster=$(output ecs_cluster_name)
release_family=$(output release_task_definition)
release_log_group=$(output release_log_group)
mapfile -t services < <(output ecs_services)
subnets=$(output private_subnet_ids | paste -sd, -)
security_group=$(output ops_security_group_id)
export AWS_DEFAULT_REGION=$region

# --- the image

if [[ -n $promote ]]; then
  sha=$promote
else
  cd "$root"
  if [[ $allow_dirty != true ]] && ! git diff --quiet HEAD --; then
    die "uncommitted changes: commit them (the image tag is the commit) or pass --allow-dirty"
  fi
  sha=$(git rev-parse HEAD)
  info "logging in to ${registry}"
  aws ecr get-login-password | docker login --username AWS --password-stdin "$registry" >/dev/null
  info "building ${repository_url}:${sha}"
  docker build --platform linux/amd64 --pull --tag "${repository_url}:${sha}" "$root"
  info "pushing ${repository_url}:${sha}"
  docker push "${repository_url}:${sha}"
fi

# Move the deploy tag to the image without pulling it: same manifest, another tag.
info "moving tag ${deploy_tag} to ${sha}"
image=$(aws ecr batch-get-image --repository-name "$repository" --image-ids "imageTag=${sha}" \
  --query 'images[0].[imageManifest,imageManifestMediaType]' --output json)
manifest=$(jq -r '.[0] // empty' <<<"$image")
media_type=$(jq -r '.[1] // empty' <<<"$image")
[[ -n $manifest ]] || die "no image ${repository}:${sha} in ECR"
if ! put_error=$(aws ecr put-image --repository-name "$repository" --image-tag "$deploy_tag" \
  --image-manifest "$manifest" --image-manifest-media-type "$media_type" 2>&1 >/dev/null); then
  # the tag already names this very image: nothing to move
  [[ $put_error == *ImageAlreadyExistsException* ]] || die "could not tag the image: ${put_error}"
fi

# --- release: migrations before any new code serves

if [[ $run_release == true ]]; then
  info "running the release task (${release_family}: database users, alembic upgrade head)"
  run=$(aws ecs run-task --cluster "$cluster" --task-definition "$release_family" \
    --launch-type FARGATE --started-by build-and-push \
    --network-configuration "awsvpcConfiguration={subnets=[${subnets}],securityGroups=[${security_group}],assignPublicIp=DISABLED}" \
    --output json)
  task_arn=$(jq -r '.tasks[0].taskArn // empty' <<<"$run")
  [[ -n $task_arn ]] || die "the release task did not start: $(jq -c '.failures' <<<"$run")"
  info "waiting for ${task_arn##*/} to stop"
  aws ecs wait tasks-stopped --cluster "$cluster" --tasks "$task_arn"
  result=$(aws ecs describe-tasks --cluster "$cluster" --tasks "$task_arn" --output json)
  exit_code=$(jq -r '.tasks[0].containers[0].exitCode // "none"' <<<"$result")
  if [[ $exit_code != 0 ]]; then
    reason=$(jq -r '.tasks[0].stoppedReason // "unknown"' <<<"$result")
    die "the release task failed (exit code ${exit_code}, ${reason}); nothing was deployed. Logs: aws logs tail ${release_log_group} --since 30m"
  fi
  info "release done"
fi

# --- roll the services onto the image

for service in "${services[@]}"; do
  info "new deployment of ${service}"
  aws ecs update-service --cluster "$cluster" --service "$service" --force-new-deployment \
    --output text --query 'service.serviceName' >/dev/null
done

if [[ $wait_stable == true ]]; then
  info "waiting for ${services[*]} to become stable (a failed deployment rolls back by itself)"
  aws ecs wait services-stable --cluster "$cluster" --services "${services[@]}"
fi

info "deployed ${sha}. Check it: ops/scripts/check-infrastructure.sh"
