"""Agent swarms: an orchestrator splits a task into a graph of sub-tasks, runs each as a
sub-agent (an ordinary governed, durable run) or, for one known tool call, as a tool node (the
call alone, no model) in parallel — on asyncio or Ray — under one budget for the whole tree, and
merges the results. See ``orchestrator`` for the flow."""

from sovereign.swarm.budget import SwarmBudget, TreeBudget, parse_swarm_budget
from sovereign.swarm.executors import AsyncioExecutor, NodeJob, NodeOutcome, RayExecutor, WorkerSpec
from sovereign.swarm.orchestrator import Swarm, SwarmResult
from sovereign.swarm.plan import Plan, PlannedCall, SubTask
from sovereign.swarm.store import NodeRecord, SwarmStore

__all__ = ["AsyncioExecutor", "NodeJob", "NodeOutcome", "NodeRecord", "Plan", "PlannedCall", "RayExecutor",
           "SubTask", "Swarm", "SwarmBudget", "SwarmResult", "SwarmStore", "TreeBudget", "WorkerSpec",
           "parse_swarm_budget"]
