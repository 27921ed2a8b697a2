"""The paper's mechanism: run a MoE model within a memory budget by reading experts ahead.

SmallThinker's router reads a layer's input before attention, so a layer's experts are
known while its attention still has to run; their weights can be read from disk meanwhile.

- `map`: where each expert's three matrices lie in the file, and every layer's router;
- `router_hook`: llama.cpp's eval callback, which names each layer's experts early;
- `cache`: which experts stay resident (LFU by default), `history` its warm start;
- `io`: reads into the page cache (WILLNEED) and evictions; `page_control`: mapping, madvise, mincore;
- `direct_io`: O_DIRECT reads into RAM mapped in place (`slots`), through Linux AIO (`linux_aio`);
- `manager`: the budget, tying the above together; `replay`: policies replayed on traces.
"""
