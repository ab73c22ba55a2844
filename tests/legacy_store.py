"""A store as coopt wrote it before one MLflow experiment per study: every study in the experiment 'coopt'."""
from __future__ import annotations


def make_legacy_store(client, study: str, trials: int, sampler: str = "random") -> str:
    """The old layout's runs (a parent run named after the study, FINISHED trial runs); returns the experiment id."""
    eid = client.create_experiment("coopt")
    parent = client.create_run(eid, run_name=study, tags={"coopt.study": study, "coopt.role": "parent"})
    client.log_param(parent.info.run_id, "sampler", sampler)
    client.log_param(parent.info.run_id, "storage", "None")
    for n in range(trials):
        run = client.create_run(eid, run_name=f"trial-{n}", tags={"coopt.study": study, "coopt.role": "trial",
                                                                 "coopt.trial": str(n), "mlflow.parentRunId":
                                                                 parent.info.run_id})
        client.set_terminated(run.info.run_id, "FINISHED")
    return eid
