{#-
  The mesh's materialization of a model (docs/dbt.md). The model's rows are written once, as Parquet, into the
  step's staged snapshot: the file named by main.__mesh_step, which the mesh's dbt-duckdb plugin
  (mesh_assets/dbt_plugin.py) creates for the step. The model's dbt contract is checked first (names and types,
  before any row is written) and the columns are written in the contract's order. The model's relation then
  becomes a view over that file, so its dbt tests read the staged rows. The framework audits the file where it is
  and publishes it, or discards it. A model runs no hooks: it only selects its rows.
  Of a partitioned table, main.__mesh_step also gives the expression of a row's partition value (partition_by)
  and a folder: the rows are written there one folder per value (the framework then names the files after their
  partitions), or, when there is no row, as one empty file at location, so the staged snapshot has the model's
  columns.
-#}
{% materialization mesh_snapshot, adapter="duckdb", supported_languages=["sql"] %}
  {%- if pre_hooks or post_hooks -%}
    {{ exceptions.raise_compiler_error("model " ~ this.identifier ~ ": the mesh runs no pre_hook or post_hook "
                                       ~ "(a model selects its rows, nothing else); remove them from its config") }}
  {%- endif -%}
  {%- set found = run_query("select count(*) from duckdb_views() where schema_name = 'main' and view_name = '__mesh_step'") -%}
  {%- if found[0][0] == 0 -%}
    {{ exceptions.raise_compiler_error("model " ~ this.identifier ~ ": the mesh_snapshot materialization runs "
                                       ~ "only in a mesh step (`mesh run`, Dagster), which names the staged file") }}
  {%- endif -%}
  {%- set step = run_query("select location, partition_by, partitions from main.__mesh_step")[0] -%}
  {%- set location, partition_by, partitions = step[0], step[1], step[2] -%}
  {%- set target_relation = this.incorporate(type="view") -%}
  {%- set contract = config.get("contract") -%}
  {%- if contract and contract.enforced -%}
    {{ get_assert_columns_equivalent(sql) }}
    {%- set sql = get_select_subquery(sql) -%}
  {%- endif -%}

  {%- if partition_by -%}
    {% call statement("main", fetch_result=True) -%}
      copy (select *, {{ partition_by }} as __mesh_partition from ({{ sql }}) as model)
        to '{{ partitions | replace("'", "''") }}' (format parquet, compression zstd, partition_by (__mesh_partition))
    {%- endcall %}
    {%- set written = load_result("main")["data"][0][0] -%}
    {%- if written == 0 -%}
      {% call statement("empty") -%}
        copy (select * from ({{ sql }}) as model limit 0) to '{{ location | replace("'", "''") }}'
          (format parquet, compression zstd)
      {%- endcall %}
    {%- endif -%}
    {%- set files = location if written == 0 else partitions ~ "/*/*.parquet" -%}
  {%- else -%}
    {% call statement("main") -%}
      copy ({{ sql }}) to '{{ location | replace("'", "''") }}' (format parquet, compression zstd)
    {%- endcall %}
    {%- set files = location -%}
  {%- endif %}
  {% call statement("relation") -%}
    create or replace view {{ target_relation }} as
      select * from read_parquet('{{ files | replace("'", "''") }}', hive_partitioning = false)
  {%- endcall %}
  {{ adapter.commit() }}
  {{ return({"relations": [target_relation]}) }}
{% endmaterialization %}
