{#-
    The name character rule (docs block name_rule): 1 to `max_name_length`
    visible characters (letters, marks, digits, punctuation, symbols) with
    single or repeated spaces between them, nothing invisible, no leading or
    trailing blanks.
-#}
{% macro name_is_valid(column) -%}
    (
        {{ column }} regexp {{ sql_literal(var('name_pattern')) }}
        and char_length({{ column }}) <= {{ var('max_name_length') }}
    )
{%- endmacro %}
