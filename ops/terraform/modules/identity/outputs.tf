output "issuer" {
  description = "JWT_ISSUER: the tokens' iss."
  value       = local.issuer
}

output "jwks_url" {
  description = "JWT_JWKS_URL: where the services fetch the signing keys."
  value       = local.jwks_url
}

output "roles_claim" {
  description = "JWT_ROLES_CLAIM: Cognito lists groups in cognito:groups; another provider: roles."
  value       = local.create ? "cognito:groups" : "roles"
}

output "user_pool_id" {
  description = "The Cognito user pool (empty with an external provider)."
  value       = local.create ? aws_cognito_user_pool.this[0].id : ""
}

output "client_id" {
  description = "The buyers' app client (empty with an external provider)."
  value       = local.create ? aws_cognito_user_pool_client.buyers[0].id : ""
}
