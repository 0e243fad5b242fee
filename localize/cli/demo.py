"""``localize demo``: two traders with opposite positions, trained and compared."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from localize.cli.common import out, services
from localize.cli.root import app
from localize.demo_data import DEFAULT_LABELS_PER_USER


@app.command()
def demo(
    labels_per_user: Annotated[int, typer.Option(help="Generated labels per user.")] = DEFAULT_LABELS_PER_USER,
    method: Annotated[Optional[str], typer.Option(help="Adapter method trained per trader; default: MLP heads per "
                                                  "trader on three task priors of both traders' labels "
                                                  "(prior3-mlp-averaged).")] = None,
    seed: int = 0,
) -> None:
    """Two traders, opposite positions: the same tweets get each one's own label."""
    from localize.demo import run_demo

    with services() as (runtime, session):
        run_demo(runtime=runtime, session=session, labels_per_user=labels_per_user, method=method, seed=seed,
                 console=out())
