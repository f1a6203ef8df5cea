/* supply.silver.suppliers: landed suppliers, code columns trimmed (types and key checks come from bronze). */
SELECT
    s_suppkey,
    TRIM(s_name) AS s_name,
    s_address,
    s_nationkey,
    TRIM(s_phone) AS s_phone,
    s_acctbal,
    s_comment
FROM bronze.supplier
