"""Enumerations of DESIGN §2 shared by every service (values are the wire names)."""

from enum import StrEnum


class Channel(StrEnum):
    """Where a message came from."""

    hotline = "hotline"  # 12345热线
    portal = "portal"  # 政府网站留言板 / 部门信箱 / 领导信箱
    weibo = "weibo"
    wechat = "wechat"
    douyin = "douyin"
    forum = "forum"  # 论坛
    news = "news"  # 新闻媒体
    superior = "superior"  # 上级转办 / 舆情提示
    grid = "grid"  # 网格员上报
    other = "other"


ONLINE_CHANNELS = frozenset({Channel.weibo, Channel.wechat, Channel.douyin, Channel.forum, Channel.news})


class RequestType(StrEnum):
    """12345 national practice request types."""

    consult = "consult"  # 咨询
    help = "help"  # 求助
    complaint = "complaint"  # 投诉
    report = "report"  # 举报
    suggestion = "suggestion"  # 建议
    praise = "praise"  # 表扬
    other = "other"


REQUEST_TYPE_TEXT = {
    RequestType.consult: "咨询",
    RequestType.help: "求助",
    RequestType.complaint: "投诉",
    RequestType.report: "举报",
    RequestType.suggestion: "建议",
    RequestType.praise: "表扬",
    RequestType.other: "其他",
}


class Level(StrEnum):
    """研判定级: I is the most serious."""

    I = "I"  # noqa: E741 — the level's official name
    II = "II"
    III = "III"
    IV = "IV"

    @property
    def rank(self) -> int:
        """1 for I … 4 for IV; a smaller rank is more serious."""
        return _LEVEL_RANK[self]

    @property
    def text(self) -> str:
        """The level's Chinese name."""
        return LEVEL_TEXT[self]


_LEVEL_RANK = {"I": 1, "II": 2, "III": 3, "IV": 4}
LEVEL_TEXT = {Level.I: "特别重大", Level.II: "重大", Level.III: "较大", Level.IV: "一般"}


class WarningClass(StrEnum):
    """预警类别 [002]."""

    general = "general"  # 一般性事项
    hot_topic = "hot_topic"  # 社会热点问题
    complex_sensitive = "complex_sensitive"  # 复杂敏感事件
    major_emergency = "major_emergency"  # 重大突发事态


WARNING_CLASS_TEXT = {
    WarningClass.general: "一般性事项",
    WarningClass.hot_topic: "社会热点问题",
    WarningClass.complex_sensitive: "复杂敏感事件",
    WarningClass.major_emergency: "重大突发事态",
}


class ResponseType(StrEnum):
    """回应类型 [000]."""

    inquiry = "inquiry"  # 询问诉求类: handle and reply
    malicious = "malicious"  # 恶意传播炒作类: state the facts, refute, hand illegal acts to police
    constructive = "constructive"  # 积极建议类: adopt and reply


RESPONSE_TYPE_TEXT = {
    ResponseType.inquiry: "询问诉求类",
    ResponseType.malicious: "恶意传播炒作类",
    ResponseType.constructive: "积极建议类",
}


class Finding(StrEnum):
    """Finding after verification [002, 004]."""

    true = "true"  # 属实
    false = "false"  # 不实 / 有出入
    partly = "partly"  # 部分属实


FINDING_TEXT = {Finding.true: "属实", Finding.false: "不实", Finding.partly: "部分属实"}


class IncidentStatus(StrEnum):
    """The handling workflow's states (DESIGN §2 "Workflow")."""

    received = "received"
    graded = "graded"
    assigned = "assigned"
    signed = "signed"
    replied = "replied"
    approved = "approved"
    published = "published"
    closed = "closed"
    archived = "archived"
    returned = "returned"
    reopened = "reopened"
    screened_out = "screened_out"
    merged = "merged"  # its messages joined another incident (merged_into); it holds none any more


class CitizenStatus(StrEnum):
    """What a citizen sees of a matter."""

    received = "received"  # 已受理
    assigned = "assigned"  # 已交办
    in_progress = "in_progress"  # 办理中
    replied = "replied"  # 已答复
    closed = "closed"  # 已办结
    screened_out = "screened_out"  # 不予受理 (junk / spam)


CITIZEN_STATUS_TEXT = {
    CitizenStatus.received: "已受理",
    CitizenStatus.assigned: "已交办",
    CitizenStatus.in_progress: "办理中",
    CitizenStatus.replied: "已答复",
    CitizenStatus.closed: "已办结",
    CitizenStatus.screened_out: "不予受理",
}

# How each workflow state shows to the citizen; internal steps never leak (a draft reply is still 办理中).
CITIZEN_STATUS_OF = {
    IncidentStatus.received: CitizenStatus.received,
    IncidentStatus.graded: CitizenStatus.received,
    IncidentStatus.returned: CitizenStatus.received,
    IncidentStatus.assigned: CitizenStatus.assigned,
    IncidentStatus.signed: CitizenStatus.in_progress,
    IncidentStatus.replied: CitizenStatus.in_progress,
    IncidentStatus.approved: CitizenStatus.in_progress,
    IncidentStatus.reopened: CitizenStatus.in_progress,
    IncidentStatus.published: CitizenStatus.replied,
    IncidentStatus.closed: CitizenStatus.closed,
    IncidentStatus.archived: CitizenStatus.closed,
    IncidentStatus.screened_out: CitizenStatus.screened_out,
    IncidentStatus.merged: CitizenStatus.in_progress,  # never sent: a merged incident holds no messages
}


class Satisfaction(StrEnum):
    """Citizen feedback on a reply (回访)."""

    satisfied = "satisfied"
    basically_satisfied = "basically_satisfied"
    unsatisfied = "unsatisfied"


class Role(StrEnum):
    """Staff roles carried in the staff token."""

    clerk = "clerk"  # 受理员
    analyst = "analyst"  # 研判员
    unit = "unit"  # 承办单位 handler
    leader = "leader"  # 领导
    supervisor = "supervisor"  # 督办
    archivist = "archivist"  # 档案员
    admin = "admin"


class PrincipalKind(StrEnum):
    """Who is calling through the gateway."""

    anonymous = "anonymous"
    client = "client"  # a channel client holding an API key
    staff = "staff"
    service = "service"  # another Minsheng service
