"""How fast a model will answer at a memory budget on this machine, before it runs there.

- `measurements`: the machine's figures (the disk's expert-sized read speed and its CPU
  cost, each model's compute speed), measured once and kept;
- `profiles`: what is known of a model without loading it (its bytes, which experts it uses);
- `trace`: expert-usage traces drawn from that usage;
- `predict`: the trace replayed through the engine's own cache at a budget, misses turned
  into bytes and bytes into seconds, combined with compute as the engine overlaps them.
"""
