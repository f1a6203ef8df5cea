/* supply.silver.parts: landed parts, code columns trimmed (types and key checks come from bronze). */
SELECT
    p_partkey,
    p_name,
    TRIM(p_mfgr) AS p_mfgr,
    TRIM(p_brand) AS p_brand,
    TRIM(p_type) AS p_type,
    p_size,
    TRIM(p_container) AS p_container,
    p_retailprice,
    p_comment
FROM bronze.part
