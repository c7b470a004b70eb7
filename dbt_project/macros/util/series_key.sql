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


{#-
    A 60-bit integer standing for a series key (via surrogate_key) with the
    key's own equality: the collation's weights, so keys the collation holds
    equal ("pokémon", "pokemon") share it, as they share a group when
    grouped by the key itself. Grouping and joining on it instead of the
    200-character key keeps the per-(series, year) tables small enough for
    memory. rtrim: trailing spaces carry weight, but pad-space collations
    ignore them.
-#}
{% macro series_id(series_key_column) -%}
    {{ surrogate_key('weight_string(rtrim(' ~ series_key_column ~ '))') }}
{%- endmacro %}
