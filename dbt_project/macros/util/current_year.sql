{#- The year the run started: upper bound of a plausible release year. -#}
{% macro current_year() -%}
    {{ run_started_at.year }}
{%- endmacro %}
