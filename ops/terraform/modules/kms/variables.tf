variable "name" {
  description = "Name prefix; the key alias is alias/<name>."
  type        = string
}
