/* supply.silver.suppliers: landed suppliers, typed to the contract, code columns trimmed, rows without a key dropped. */
SELECT
    CAST(s_suppkey AS BIGINT) AS s_suppkey,
    TRIM(s_name) AS s_name,
    s_address,
    CAST(s_nationkey AS BIGINT) AS s_nationkey,
    TRIM(s_phone) AS s_phone,
    CAST(s_acctbal AS DECIMAL(15, 2)) AS s_acctbal,
    s_comment
FROM bronze.supplier
WHERE s_suppkey IS NOT NULL
