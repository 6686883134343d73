"""Training spread over processes: two CPU processes (torchrun, accelerate's MULTI_CPU state, gloo) train the same
weights as one process running the same global batches (`Trainer(grad_accumulation=2)`); the accelerate config files
for GPUs load with accelerate's own parser.

`accelerate launch --cpu --num_processes 2` would not do here: without MPI it starts one process (its simple
launcher); torchrun starts two, and `ACCELERATE_USE_CPU=1` makes accelerate join them over gloo on the CPU.
Run as a module (`python -m tests.test_distributed OUT`, what each launched process runs), it trains the tiny model
and the main process writes the trained parameters and the stage reports into OUT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from core.examples import memorization_examples, retrieval_examples
from core.settings import REPO_ROOT
from core.tools import Tool, ToolCatalog
from core.train import PROGRESS_FILE, StageConfig, Trainer

STAGES = {  # stage name -> config: a codes-head stage then a full-vocabulary one, small batches so each has steps
    "memorization": StageConfig(epochs=2, head="codes", lr=3e-3, rows_lr=3e-2, batch_tokens=256, max_batch=3),
    "retrieval": StageConfig(epochs=2, head="full", lr=1e-3, rows_lr=1e-2, batch_tokens=256, max_batch=3),
}
# Float32 throughout. Measured here the two runs agree bit for bit (one thread per process, as in the test); the
# tolerance leaves room for another summation order (gradients all-reduced across processes vs accumulated in one,
# or other thread counts), while one process without accumulation ends 0.2 away (a different run, not noise).
TOLERANCE = 1e-5
LAUNCH_TIMEOUT_S = 120


def tiny_toolgen():
    """The packaged SmolLM2 tokenizer over a 2-layer random Llama and twelve hand-made tools."""
    from transformers import AutoTokenizer

    from core.model import ToolGenModel, smollm2_dir
    from core.tiny import tiny_llama

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    apis = {"Weather": ["forecast", "air quality", "storm alerts"], "Finance": ["stock price", "exchange rate"]}
    apis |= {"Music": ["lyrics", "top charts"], "Travel": ["flight search", "hotel search", "car rental"]}
    apis |= {"Food": ["recipes", "restaurants"]}
    tools = [
        Tool(f"{name}&&{api}", name.lower(), name, api, f"Returns the {api} from the {name} service.")
        for name, names in apis.items()
        for api in names
    ]
    return ToolGenModel.from_base(ToolCatalog(tools), model=tiny_llama(len(tokenizer)), tokenizer=tokenizer)


def train_tiny(grad_accumulation: int) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Train the tiny model through both stages; (its parameters, the stage reports)."""
    toolgen = tiny_toolgen()
    trainer = Trainer(
        toolgen, train_layers=1, bf16=False, cache_dtype=torch.float32, grad_accumulation=grad_accumulation
    )
    examples = {
        "memorization": memorization_examples(toolgen),
        "retrieval": retrieval_examples(toolgen, [], synthetic_per_tool=2, synthetic_for="all"),
    }
    reports = [trainer.train(examples[stage], config, stage) for stage, config in STAGES.items()]
    weights = {name: p.detach().clone() for name, p in toolgen.model.named_parameters()}
    return weights, reports


@pytest.mark.slow
def test_two_processes_train_the_weights_of_one_with_the_same_global_batch(tmp_path, smollm2_tokenizer_dir):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    started = time.time()
    done = subprocess.run(
        [*launch, "-m", "tests.test_distributed", str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    launched_s = time.time() - started
    two = torch.load(tmp_path / "weights.pt")
    two_reports = json.loads((tmp_path / "reports.json").read_text())

    one, one_reports = train_tiny(grad_accumulation=2)

    assert [r["processes"] for r in two_reports] == [2, 2] and [r["processes"] for r in one_reports] == [1, 1]
    assert [r["steps"] for r in two_reports] == [r["steps"] for r in one_reports]
    assert all(r["steps"] >= 4 for r in one_reports), one_reports
    for a, b in zip(two_reports, one_reports):
        assert a["loss_first"] == pytest.approx(b["loss_first"], abs=TOLERANCE)
        assert a["loss_last"] == pytest.approx(b["loss_last"], abs=TOLERANCE)
        assert a["tokens"] == b["tokens"]  # both processes' tokens are counted
    start = tiny_toolgen().model.state_dict()
    assert one.keys() == two.keys()
    changed = [name for name in one if not torch.equal(one[name], start[name])]
    assert "model.embed_tokens.weight" in changed and any(".layers.1." in name for name in changed)
    worst = {name: (one[name] - two[name]).abs().max().item() for name in one}
    assert max(worst.values()) <= TOLERANCE, (sorted(worst.items(), key=lambda kv: -kv[1])[:3], launched_s)


def test_one_process_computes_what_it_did_before_with_grad_accumulation_one(smollm2_tokenizer_dir):
    """The default (one process, grad_accumulation=1) is each length batch's mean loss, one step per batch."""
    toolgen = tiny_toolgen()
    trainer = Trainer(toolgen, train_layers=1, bf16=False)
    batches = [[0], [1, 2], [3], [4, 5], [6]]
    assert trainer._steps(batches) == [[b] for b in batches]
    trainer.grad_accumulation = 2
    assert trainer._steps(batches) == [[[0], [1, 2]], [[3], [4, 5]]]  # the odd batch waits for another epoch
    assert trainer._steps([[0]]) == [[[0], [0]]]
    with pytest.raises(ValueError, match="grad_accumulation"):
        Trainer(toolgen, grad_accumulation=0)


def test_a_stage_state_saved_with_another_layout_is_not_resumed(tmp_path, smollm2_tokenizer_dir):
    """Steps are planned from processes x grad_accumulation: a state saved under another layout starts over."""
    trainer = Trainer(tiny_toolgen(), train_layers=1, bf16=False, grad_accumulation=2)
    config = StageConfig()
    saved = {"stage": "memorization", "config": asdict(config), "step": 3, "losses": [1.0]}
    (tmp_path / PROGRESS_FILE).write_text(json.dumps(saved))  # written before the layout was recorded: 1 and 1
    assert trainer._load_state(tmp_path, "memorization", config) == {}
    (tmp_path / PROGRESS_FILE).write_text(json.dumps(saved | {"processes": 2, "grad_accumulation": 1}))
    assert trainer._load_state(tmp_path, "memorization", config) == {}


@pytest.mark.parametrize("name, kind", [("multi_gpu.yaml", "MULTI_GPU"), ("deepspeed_zero2.yaml", "DEEPSPEED")])
def test_the_gpu_accelerate_configs_load_with_accelerates_parser(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO_ROOT / "configs" / "accelerate" / name))
    assert config.distributed_type.value == kind and config.num_processes >= 2 and not config.use_cpu
    if kind == "DEEPSPEED":
        ds_file = REPO_ROOT / config.deepspeed_config["deepspeed_config_file"]
        ds = json.loads(ds_file.read_text())
        # Fixed numbers where accelerate cannot fill "auto" (no dataloader is prepared) and where the trainer's own
        # choices must hold: one optimizer step per backward, its gradient clipping at 1.0.
        assert ds["train_micro_batch_size_per_gpu"] == 1 and ds["gradient_accumulation_steps"] == 1
        assert ds["gradient_clipping"] == 1.0 and ds["zero_optimization"]["stage"] == 2


def _worker(out: Path) -> None:
    """One process of the launched run: train, and let the main process write what the test compares."""
    from accelerate import PartialState

    torch.set_num_threads(1)
    weights, reports = train_tiny(grad_accumulation=1)
    if PartialState().is_main_process:
        torch.save(weights, out / "weights.pt")
        (out / "reports.json").write_text(json.dumps(reports))
    PartialState().wait_for_everyone()


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
