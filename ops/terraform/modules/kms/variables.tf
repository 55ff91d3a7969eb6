variable "name" {
  description = "Name prefix; the key alias is alias/<name>."
  type        = string
}

variable "create_key" {
  description = "Create the customer-managed key; false where the account may not (resources then use their AWS managed keys)."
  type        = bool
  default     = true
}
