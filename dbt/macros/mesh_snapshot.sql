{#-
  The mesh's materialization of a model (docs/dbt.md). The model's rows are written once, as Parquet, into the
  step's staged snapshot: the file named by main.__mesh_step, which the mesh's dbt-duckdb plugin
  (mesh_assets/dbt_plugin.py) creates for the step. The model's dbt contract is checked first (names and types,
  before any row is written) and the columns are written in the contract's order. The model's relation then
  becomes a view over that file, so its dbt tests read the staged rows. The framework audits the file where it is
  and publishes it, or discards it. A model runs no hooks: it only selects its rows.
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
  {%- set location = run_query("select location from main.__mesh_step")[0][0] -%}
  {%- set target_relation = this.incorporate(type="view") -%}
  {%- set contract = config.get("contract") -%}
  {%- if contract and contract.enforced -%}
    {{ get_assert_columns_equivalent(sql) }}
    {%- set sql = get_select_subquery(sql) -%}
  {%- endif -%}

  {% call statement("main") -%}
    copy ({{ sql }}) to '{{ location | replace("'", "''") }}' (format parquet, compression zstd)
  {%- endcall %}
  {% call statement("relation") -%}
    create or replace view {{ target_relation }} as
      select * from read_parquet('{{ location | replace("'", "''") }}')
  {%- endcall %}
  {{ adapter.commit() }}
  {{ return({"relations": [target_relation]}) }}
{% endmaterialization %}
