"""AnsFlow ChatOps: run delivery pipelines from Slack, the terminal and a REST API."""

__version__ = "0.1.0"
