/* supply.silver.part_suppliers: landed part-supplier offers, typed to the contract, rows without a key dropped. */
SELECT
    CAST(ps_partkey AS BIGINT) AS ps_partkey,
    CAST(ps_suppkey AS BIGINT) AS ps_suppkey,
    CAST(ps_availqty AS BIGINT) AS ps_availqty,
    CAST(ps_supplycost AS DECIMAL(15, 2)) AS ps_supplycost,
    ps_comment
FROM bronze.partsupp
WHERE ps_partkey IS NOT NULL
  AND ps_suppkey IS NOT NULL
