variable "name" {
  description = "Name of the user pool and prefix of its client."
  type        = string
}

variable "deletion_protection" {
  description = "Protect the user pool (and its users) from deletion."
  type        = bool
  default     = true
}

variable "external_issuer" {
  description = "Another identity provider's issuer (the tokens' iss). Empty: a Cognito user pool is created."
  type        = string
  default     = ""
}

variable "external_jwks_url" {
  description = "The key set URL of that provider (RS256 keys)."
  type        = string
  default     = ""
}
