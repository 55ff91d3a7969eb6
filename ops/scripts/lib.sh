# shellcheck shell=bash
# Shared by build-and-push.sh and check-infrastructure.sh: messages, prerequisite checks and the
# Terraform outputs. Sourced, not run.

die() {
  echo "error: $*" >&2
  exit 1
}

info() {
  echo "==> $*" >&2
}

# require TOOL HINT: stop with a clear message when TOOL is not on PATH.
require() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed or not on PATH: $2"
}

# AWS credentials: whatever the CLI finds (AWS_PROFILE, environment, SSO, instance role).
require_aws_credentials() {
  local identity
  if ! identity=$(aws sts get-caller-identity --output text --query Arn 2>&1); then
    die "no usable AWS credentials (aws sts get-caller-identity said: ${identity}). Set AWS_PROFILE, run 'aws sso login', or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."
  fi
  info "AWS identity: ${identity}"
}

# load_outputs TF_DIR: the outputs of `terraform apply` as JSON in TF_OUTPUTS.
load_outputs() {
  local dir=$1
  [[ -d $dir ]] || die "Terraform directory not found: ${dir}"
  if ! TF_OUTPUTS=$(terraform -chdir="$dir" output -json 2>/dev/null) || [[ $TF_OUTPUTS == "{}" ]]; then
    die "no Terraform outputs in ${dir}: run 'terraform init && terraform apply' there first"
  fi
  export TF_OUTPUTS
}

# output NAME: one output's value (strings raw, lists one item per line).
output() {
  local value
  value=$(jq -r --arg name "$1" '.[$name].value | if type == "array" then .[] else . end // empty' <<<"$TF_OUTPUTS")
  [[ -n $value ]] || die "Terraform output '$1' is missing: apply the current ops/terraform first"
  printf '%s\n' "$value"
}
