"""Blocks a page places with one line where it would otherwise loop: tables, listings and rows built from the facts.

    forward.py       vocab_table, position_tables, norm_rows, softmax_rows, strongest_keys, kv_groups
    backward.py      gradient_table
    optimization.py  tensor_table, tensor_pictures, per_text, gain_table, place_table, steepest_table, loss_table,
                     generation_table, trained_attention, value_list
    reference.py     record_tables

They are macros (`@macro`, site_build/macros/registry.py) that read the facts (site_build/facts/), so they stand
above both: the facts use the macros' formatting, and these use the facts. Importing this package registers them;
the page renderer (site_build/render/jinja.py) does.
"""

from site_build.sections import backward, forward, optimization, reference  # noqa: F401 - they register
