"""Accuracy on per-user labels: the data protocol, baselines, the fast harness, recipes and the report.

``localize eval`` runs one recipe (the default unless ``--method``) and the baselines; ``localize eval --report``
writes the full comparison. ``through_services`` runs one recipe through the production services instead.
"""
from __future__ import annotations

from localize.evaluation.data import EvalData, load_eval_data, qualifying_users
from localize.evaluation.harness import Harness, MethodResult, Recipe, UserResult, user_metrics
from localize.evaluation.runner import run_evaluation, run_report

__all__ = ["EvalData", "Harness", "MethodResult", "Recipe", "UserResult", "load_eval_data", "qualifying_users",
           "run_evaluation", "run_report", "user_metrics"]
