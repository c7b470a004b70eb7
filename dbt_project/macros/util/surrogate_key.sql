{#-
    A stable integer key from a natural key: the first 60 bits of its md5
    (collisions are negligible for this data's size). The same natural key
    gets the same id in every build, so ids survive reloads. -1 is reserved
    for the "unknown" member of each dimension and can never be produced.
-#}
{% macro surrogate_key(expression) -%}
    cast(conv(left(md5({{ expression }}), 15), 16, 10) as signed)
{%- endmacro %}
