/* supply.silver.part_suppliers: landed part-supplier offers (types and key checks come from bronze). */
SELECT
    ps_partkey,
    ps_suppkey,
    ps_availqty,
    ps_supplycost,
    ps_comment
FROM bronze.partsupp
