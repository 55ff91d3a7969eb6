# One repository: the same image runs every Procfile process type; only the command differs.
resource "aws_ecr_repository" "this" {
  name = var.name
  #checkov:skip=CKV_AWS_51:tags stay mutable on purpose: every image is pushed under its git SHA, and build-and-push.sh moves the deploy tag (var.image_tag, "live") to it, so a forced deployment and a rollback (--promote <sha>) are one tag move
  image_tag_mutability = "MUTABLE"
  force_delete         = var.force_delete

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = var.kms_key_arn == null ? "AES256" : "KMS"
    kms_key         = var.kms_key_arn
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last ${var.keep_images} images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = var.keep_images
      }
      action = { type = "expire" }
    }]
  })
}
