terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # State holds the generated database password and Redis token: keep it in an encrypted,
  # access-controlled bucket, not on a laptop. Uncomment and fill in before the first apply
  # (the bucket and lock table are created once, by hand or by a bootstrap stack).
  # backend "s3" {
  #   bucket         = "my-terraform-state"
  #   key            = "ticketing/terraform.tfstate"
  #   region         = "us-east-1"
  #   encrypt        = true
  #   dynamodb_table = "terraform-locks"
  # }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = {
      Project   = var.name
      ManagedBy = "terraform"
    }
  }
}
