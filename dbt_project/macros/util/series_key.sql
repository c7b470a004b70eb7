{#-
    Franchise key of a title (docs block series_key): lowercase, a trailing
    "(...)" remark removed, cut at the first ':' or ' - ', runs of spaces
    collapsed, then trailing numbers and roman numerals removed
    ("Grand Theft Auto V" -> "grand theft auto", "FIFA 14" -> "fifa",
    "Call of Duty: Black Ops" -> "call of duty"). Cast to a bounded
    varchar: regexp_replace returns longtext, which MariaDB cannot index
    (joins on the key would scan).
-#}
{% macro series_key(column) -%}
    cast(trim(regexp_replace(
        regexp_replace(
            substring_index(substring_index(
                regexp_replace(lower({{ column }}), {{ sql_literal('\s*\([^)]*\)\s*$') }}, ''),
                ':', 1
            ), ' - ', 1),
            {{ sql_literal('\s+') }}, ' '
        ),
        {{ sql_literal('(\s+([0-9]+|[ivxlc]+))+\s*$') }}, ''
    )) as char(200))
{%- endmacro %}
