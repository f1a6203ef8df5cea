/* supply.gold.part_catalog: one row per part with its number of suppliers and lowest supply cost (public port). */
WITH offers AS (
    SELECT
        ps_partkey,
        COUNT(*) AS supplier_count,
        MIN(ps_supplycost) AS min_supplycost
    FROM {{ source('supply_silver', 'part_suppliers') }}
    GROUP BY ps_partkey
)
SELECT
    p.p_partkey,
    p.p_name,
    p.p_mfgr,
    p.p_brand,
    p.p_type,
    p.p_size,
    p.p_container,
    p.p_retailprice,
    p.p_comment,
    COALESCE(o.supplier_count, 0) AS supplier_count,
    o.min_supplycost
FROM {{ source('supply_silver', 'parts') }} AS p
LEFT JOIN offers AS o
    ON o.ps_partkey = p.p_partkey
