"""Change 9 diagnostic: continue the change-9 base (no copies after 5,000 steps) for 2,000 steps
with a fresh schedule (peak lr 1.5e-3), monitoring the greedy audit every 250 steps."""
import json, time, sys
from pathlib import Path
from nex_interp.zoo.train import Stage, Phase, train_stage, default_config, greedy_eval, _save, CURRICULUM
from nex_interp.zoo.task import generate_problems, DEFAULT_SHAPE
from nex_interp.zoo.plan import MODELS
cfg = default_config()
mon = generate_problems(20, 20_000, prefix="mon")
log = open("zoo_kinds_run/cont_monitor.jsonl", "a")
def monitor(step, model):
    if (step + 1) % 250 == 0:
        t = time.time(); ev = greedy_eval(model, mon)
        ev.update(step=step + 1, seconds=round(time.time() - t, 1), at=time.strftime("%H:%M:%S"))
        log.write(json.dumps(ev) + "\n"); log.flush()
stage = Stage("base2", "base", tuple(MODELS["base"].items()), 2000, 1.5e-3, 11, (Phase(1.0, DEFAULT_SHAPE, mixed=0.5),))
t0 = time.time()
model, loss = train_stage(stage, cfg, Path("zoo_kinds_run/out/base"), progress=True, monitor=monitor)
_save(model, Path("zoo_kinds_run/out/base2"), "float32")
print("DONE", loss, time.time() - t0)
