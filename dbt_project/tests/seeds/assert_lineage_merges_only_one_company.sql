{#-
    A publisher that vgsales.csv files under its own name is merged into
    another only when they are one company (a spelling, subsidiary, label,
    parent or rename): a company that merged or was acquired keeps its own
    history as filed (docs block lineage_merge_decision). Returns each
    lineage row that would merge a filed publisher by merger or acquisition.
-#}
with

lineage as (

    select * from {{ ref('ref_publisher_lineage') }}

),

publishers as (

    select * from {{ ref('dim_publisher') }}

)

select
    lineage.written_name,
    lineage.canonical_name,
    lineage.link_kind

from lineage
inner join publishers
    on lineage.written_name = publishers.publisher_name
where lineage.link_kind in ('merger', 'acquisition')
