"""Task suites and ``sovereign eval``: load a suite, run each task through the agent runtime in
a fresh workspace, check the outcome strictly, and report success rate, pass^k, steps, tokens,
time, cost and attack success."""

from sovereign.evals.checks import answer_problems, attack_effects, check_command_problem, has_tool_markup, numbers_in
from sovereign.evals.harness import Attempt, EffectPolicy, EvalOptions, Evaluator, prepare_workspace
from sovereign.evals.report import EvalReport, Summary, bar_chart_svg, markdown_report, rich_table, summarise
from sovereign.evals.suite import Attack, Expect, Suite, SuiteError, Task, load_suite, parse_suite

__all__ = [
    "Attack",
    "Attempt",
    "EffectPolicy",
    "EvalOptions",
    "EvalReport",
    "Evaluator",
    "Expect",
    "Suite",
    "SuiteError",
    "Summary",
    "Task",
    "answer_problems",
    "attack_effects",
    "bar_chart_svg",
    "check_command_problem",
    "has_tool_markup",
    "load_suite",
    "markdown_report",
    "numbers_in",
    "parse_suite",
    "prepare_workspace",
    "rich_table",
    "summarise",
]
