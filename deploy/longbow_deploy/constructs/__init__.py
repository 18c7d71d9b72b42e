"""The units the Longbow stack is composed of; each takes keyword-only props and exposes the
resources the stack wires together (grants are made by the stack, not here)."""

from .ec2_workers import Ec2Workers
from .job_queue import JobQueue
from .job_table import JobTable
from .lambda_worker import LambdaWorker
from .monitoring import Monitoring
from .network import Network
from .new_objects import NewObjectTrigger
from .parameters import Parameters
from .sender import Sender

__all__ = [
    "Ec2Workers",
    "JobQueue",
    "JobTable",
    "LambdaWorker",
    "Monitoring",
    "Network",
    "NewObjectTrigger",
    "Parameters",
    "Sender",
]
