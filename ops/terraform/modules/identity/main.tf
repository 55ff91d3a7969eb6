# Who buyers and operators are: a Cognito user pool issuing RS256 tokens, its app client, and
# the `operator` group (Cognito puts a user's groups in the `cognito:groups` claim the services
# read for roles). Not created when the deployment names another identity provider (its issuer
# and key set URL as variables): the services only need an issuer and a JWKS URL.

locals {
  create   = var.external_issuer == ""
  issuer   = local.create ? "https://${aws_cognito_user_pool.this[0].endpoint}" : var.external_issuer
  jwks_url = local.create ? "${local.issuer}/.well-known/jwks.json" : var.external_jwks_url
}

resource "aws_cognito_user_pool" "this" {
  count                    = local.create ? 1 : 0
  name                     = var.name
  deletion_protection      = var.deletion_protection ? "ACTIVE" : "INACTIVE"
  username_attributes      = ["email"]
  auto_verified_attributes = ["email"]
  mfa_configuration        = "OPTIONAL"

  software_token_mfa_configuration {
    enabled = true
  }

  password_policy {
    minimum_length    = 12
    require_lowercase = true
    require_numbers   = true
    require_symbols   = false
    require_uppercase = true
  }

  admin_create_user_config {
    allow_admin_create_user_only = false
  }
}

resource "aws_cognito_user_pool_client" "buyers" {
  count                         = local.create ? 1 : 0
  name                          = "${var.name}-buyers"
  user_pool_id                  = aws_cognito_user_pool.this[0].id
  generate_secret               = false # a browser or app client: no secret to keep
  prevent_user_existence_errors = "ENABLED"
  explicit_auth_flows           = ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
  access_token_validity         = 1
  id_token_validity             = 1
  refresh_token_validity        = 30
  token_validity_units {
    access_token  = "hours"
    id_token      = "hours"
    refresh_token = "days"
  }
}

resource "aws_cognito_user_group" "operator" {
  count        = local.create ? 1 : 0
  name         = "operator"
  user_pool_id = aws_cognito_user_pool.this[0].id
  description  = "Operators: the back office (ticket lists, counts, revenue)."
}
