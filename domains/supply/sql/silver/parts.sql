/* supply.silver.parts: landed parts, typed to the contract, code columns trimmed, rows without a key dropped. */
SELECT
    CAST(p_partkey AS BIGINT) AS p_partkey,
    p_name,
    TRIM(p_mfgr) AS p_mfgr,
    TRIM(p_brand) AS p_brand,
    TRIM(p_type) AS p_type,
    CAST(p_size AS BIGINT) AS p_size,
    TRIM(p_container) AS p_container,
    CAST(p_retailprice AS DECIMAL(15, 2)) AS p_retailprice,
    p_comment
FROM bronze.part
WHERE p_partkey IS NOT NULL
