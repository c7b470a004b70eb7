{#-
    The features the training references describe, as (name, kind) pairs,
    read from the landing table when the model runs. The feature schema is
    defined once, in ml/features.py; the reference writer records each
    model's features, and the drift models unpivot exactly those mart
    columns. At parse time (no database) the list is empty, and so it is
    before the landing table exists (sqlfluff compiling a fresh warehouse;
    in a build the on-run-start hook has created it).
-#}
{% macro drift_reference_features() %}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set reference = source('monitoring', 'raw_training_reference') -%}
    {%- if adapter.get_relation(
            database=reference.database,
            schema=reference.schema,
            identifier=reference.identifier) is none -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set query -%}
        select distinct feature, feature_kind
        from {{ reference }}
        order by feature
    {%- endset -%}
    {%- set features = [] -%}
    {%- for row in run_query(query).rows -%}
        {%- if not modules.re.fullmatch('[a-z_][a-z0-9_]*', row[0]) -%}
            {{ exceptions.raise_compiler_error(
                "raw_training_reference holds the feature name " ~ row[0]
                ~ ", which is not a lowercase identifier of ml_release_features") }}
        {%- endif -%}
        {%- do features.append((row[0], row[1])) -%}
    {%- endfor -%}
    {{ return(features) }}
{% endmacro %}


{#-
    One bin's contribution to the population stability index,
    (c - r) * ln(c / r), with both shares floored at `drift_share_floor` so
    an empty bin on either side gives a large finite term, not infinity.
-#}
{% macro psi_term(current_share, reference_share) -%}
    {%- set floor = var('drift_share_floor') -%}
    (
        greatest({{ current_share }}, {{ floor }})
        - greatest({{ reference_share }}, {{ floor }})
    )
    * ln(
        greatest({{ current_share }}, {{ floor }})
        / greatest({{ reference_share }}, {{ floor }})
    )
{%- endmacro %}


{#-
    The value of the column named by `key`, row by row, as text: an unpivot
    of `relation`'s columns `features` (pairs from drift_reference_features)
    in one pass. Null for a name that is not listed (all names when the list
    is empty).
-#}
{% macro feature_value_by_name(key, relation, features) -%}
    case {{ key }}
    {%- for feature, _kind in features %}
        when '{{ feature }}' then cast({{ relation }}.{{ feature }} as char(512))
    {%- endfor %}
    {%- if not features %} when '' then null{% endif %} end
{%- endmacro %}
