"""Diagnostic (change 9, second seed): change 9's base with seed 2 instead of 1, greedy audit of
the 20 monitor problems every 250 steps. Stopped by hand when the session's time runs out."""
import dataclasses, json, time
from pathlib import Path
from nex_interp.zoo.train import train_stage, default_config, greedy_eval
from nex_interp.zoo.task import generate_problems
cfg = default_config()
stage = dataclasses.replace(cfg.stages[0], seed=2)
mon = generate_problems(20, 20_000, prefix="mon")
log = open("zoo_kinds_run/seed2/monitor.jsonl", "a")
def monitor(step, model):
    if (step + 1) % 250 == 0:
        t = time.time(); ev = greedy_eval(model, mon)
        ev.update(step=step + 1, seconds=round(time.time() - t, 1), at=time.strftime("%H:%M:%S"))
        log.write(json.dumps(ev) + "\n"); log.flush()
        if (step + 1) % 500 == 0:
            model.save_pretrained(f"zoo_kinds_run/seed2/ckpt")
train_stage(stage, cfg, None, progress=True, monitor=monitor)
