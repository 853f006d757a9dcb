"""Cities callers name, with their canonical short names (no 市 suffix)."""

from __future__ import annotations

_CITIES = (
    "北京 上海 天津 重庆 广州 深圳 东莞 佛山 珠海 中山 惠州 汕头 江门 湛江 成都 绵阳 武汉 宜昌 襄阳 杭州 宁波 温州 绍兴 嘉兴 "
    "金华 台州 义乌 南京 苏州 无锡 常州 南通 徐州 扬州 西安 宝鸡 郑州 洛阳 长沙 株洲 岳阳 沈阳 大连 鞍山 青岛 济南 烟台 潍坊 "
    "临沂 泰安 淄博 威海 哈尔滨 长春 吉林 昆明 大理 合肥 芜湖 福州 厦门 泉州 南昌 赣州 南宁 桂林 柳州 贵阳 遵义 海口 三亚 "
    "石家庄 唐山 保定 邯郸 太原 大同 呼和浩特 包头 兰州 银川 西宁 乌鲁木齐 拉萨"
).split()

# how callers or recognisers say some of them
_ALIASES = {"帝都": "北京", "魔都": "上海", "羊城": "广州", "鹏城": "深圳", "蓉城": "成都", "江城": "武汉", "冰城": "哈尔滨", "春城": "昆明"}

CITIES: tuple[str, ...] = tuple(_CITIES)
CITY_ALIASES: list[tuple[str, str]] = sorted(
    [(c + "市", c) for c in _CITIES] + [(c, c) for c in _CITIES] + list(_ALIASES.items()),
    key=lambda pair: -len(pair[0]),
)
