{#-
    A value as a MariaDB string literal. MariaDB reads backslash escapes in
    string literals, so a regex such as \p{L} must reach it as \\p{L}.
-#}
{% macro sql_literal(value) -%}
    '{{ value | replace("\\", "\\\\") | replace("'", "''") }}'
{%- endmacro %}
