"""ImageStreams for AWS: OpenShift-style image streams on ECR, with digest-pinned redeploys."""

__version__ = "0.1.0"
