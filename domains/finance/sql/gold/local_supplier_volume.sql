/*
TPC-H Q5 Local Supplier Volume, validation parameters REGION = ASIA, DATE = 1994-01-01:
lines whose customer and supplier are in the same nation of the region, from the sales.order_lines_wide port.
*/
SELECT
    supplier_nation AS n_name,
    SUM(revenue) AS revenue
FROM sales.order_lines_wide
WHERE c_nationkey = s_nationkey
  AND supplier_region = 'ASIA'
  AND o_orderdate >= DATE '1994-01-01'
  AND o_orderdate < DATE '1994-01-01' + INTERVAL '1' YEAR
GROUP BY
    supplier_nation
ORDER BY
    revenue DESC
