"""Opt-in, for users with GPT-2 small in their Hugging Face cache (the baselines issue, item 5):
where the learned ActivScalar head map of a default IOI run puts the IOI circuit's heads (Wang et
al. 2023): name movers 9.6, 9.9, 10.0 and S-inhibition heads 7.3, 7.9, 8.6, 8.10. It prints every
one's rank among the 144 heads and asserts the one thing a learned map of IOI should show if it
finds the circuit at all: a name mover among its top tenth. Without the weights it skips, and
nothing downloads (this suite has never had them: the result is unmeasured here)."""

from __future__ import annotations

import pytest
import torch

NAME_MOVERS = ((9, 6), (9, 9), (10, 0))
S_INHIBITION = ((7, 3), (7, 9), (8, 6), (8, 10))


def gpt2_cached() -> bool:
    try:
        from huggingface_hub import snapshot_download

        snapshot_download("gpt2", local_files_only=True)
        return True
    except Exception:  # noqa: BLE001 - not cached, in whatever way the hub says it
        return False


@pytest.mark.slow
@pytest.mark.skipif(not gpt2_cached(), reason="GPT-2 small is not in the Hugging Face cache (nothing downloads)")
def test_where_the_learned_head_map_puts_the_ioi_circuit(tmp_path):
    from actscale.engine.models import load_model
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import train_run

    model = load_model("gpt2", "cpu")
    bundle = train_run(TrainConfig(model="gpt2", task="ioi", sites=("head",)), model, store=tmp_path)
    heads = bundle.params["alpha.head"].abs().sum(1)  # [layer head], summed over positions
    assert heads.shape == (12, 12)
    order = torch.sort(-heads.reshape(-1), stable=True).indices.tolist()
    rank = {divmod(flat, 12): i + 1 for i, flat in enumerate(order)}
    for label, group in (("name movers", NAME_MOVERS), ("S-inhibition", S_INHIBITION)):
        print(f"{label}: " + ", ".join(f"{layer}.{head} rank {rank[(layer, head)]} of 144" for layer, head in group))
    assert min(rank[h] for h in NAME_MOVERS) <= 14
