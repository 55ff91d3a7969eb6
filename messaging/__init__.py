"""The SNS/SQS side outside the worker: the purchase API's publisher, queue depths, dead letters."""
