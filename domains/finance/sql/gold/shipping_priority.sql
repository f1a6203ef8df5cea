/*
TPC-H Q3 Shipping Priority, validation parameters SEGMENT = BUILDING, DATE = 1995-03-15,
from the sales.order_lines_wide port (which carries the customer's c_mktsegment).
*/
SELECT
    l_orderkey,
    SUM(revenue) AS revenue,
    o_orderdate,
    o_shippriority
FROM sales.order_lines_wide
WHERE c_mktsegment = 'BUILDING'
  AND o_orderdate < DATE '1995-03-15'
  AND l_shipdate > DATE '1995-03-15'
GROUP BY
    l_orderkey,
    o_orderdate,
    o_shippriority
ORDER BY
    revenue DESC,
    o_orderdate
LIMIT 10
