"""Change 10, second seed: the base stage's drill phase with seed 2 (1 thread), drill accuracy every 100 steps."""
import dataclasses, json, time
from nex_interp.zoo.train import default_config, train_stage
from nex_interp.zoo.drills import drill_accuracy
cfg = default_config()
base = dataclasses.replace(cfg.stages[0], seed=2)
cfg = dataclasses.replace(cfg, threads=1)
log = open("seed2_drills.jsonl", "a")
class Stop(Exception): pass
def monitor(step, model):
    s = step + 1
    if s % 100 == 0:
        log.write(json.dumps({"step": s, "drill_acc": round(drill_accuracy(model), 4), "at": time.strftime("%H:%M:%S")}) + "\n"); log.flush()
    if s >= 600:
        raise Stop
try:
    train_stage(base, cfg, None, progress=True, monitor=monitor)
except Stop:
    print("stopped at 600")
