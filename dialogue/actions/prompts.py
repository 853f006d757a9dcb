"""What the actions say that is not a domain response (domain.yml holds what rules and forms say).

Spoken Mandarin: short sentences, no symbols or lists; digits are turned into words before synthesis.
"""

PLEASE_GO_AHEAD = "好的，请说。"
HOW_CAN_I_HELP = "请问您要办理什么业务？您可以说查养老金、挂失社保卡、找工作，或者说转人工。"
CANCELLED = "好的，已经取消了。还有其他问题吗？"
NOT_UNDERSTOOD = "抱歉，我没有听明白。您可以换个说法，比如查养老金、挂失社保卡、找工作，或者说转人工。"
STILL_NOT_UNDERSTOOD = "抱歉，我还是没听明白，为您转接人工客服，请稍候。"
HANDOFF = "好的，正在为您转接人工客服，请稍候。"
HANDOFF_COMPLAINT = "给您带来不便，非常抱歉。我马上为您转接人工客服，请稍候。"
HANDOFF_URGENT = "您的情况比较紧急，我马上为您转接人工客服。"
BACKEND_ERROR = "非常抱歉，系统暂时查不到您的信息。"
VERIFIED = "身份验证通过。"
KEYPAD_PASSWORD = "为了您的安全，服务密码请不要说出来，请在电话按键上输入六位密码，以井号键结束。"
KEYPAD_INVALID = "按键无效。请直接说出您要办理的业务，需要人工服务请按零。"
NOT_AN_ANSWER = "不好意思，"
OUT_OF_SCOPE_MEDICAL = "医保报销的问题请拨打医保服务热线12393咨询。"
OUT_OF_SCOPE_HOUSING_FUND = "住房公积金的问题请拨打公积金服务热线12329咨询。"
OUT_OF_SCOPE = "这个问题不在人社服务的范围内，我这边帮不上忙。我可以帮您办社保、社保卡、就业、人才和劳动维权方面的事。"

# The confirming question when the caller was half understood: 您是要挂失社保卡吗？ (conversation.ActionFallback)
GUESSES = {
    "query_pension_contribution": "查养老保险缴费",
    "query_pension_payment": "查养老金发放",
    "pension_certification": "问养老金资格认证",
    "retirement_age": "问退休年龄",
    "insurance_transfer": "问社保转移",
    "unemployment_benefit": "问失业保险金",
    "work_injury": "问工伤",
    "flexible_employment_insurance": "问灵活就业交社保",
    "contribution_certificate": "开社保缴费证明",
    "card_loss_report": "挂失社保卡",
    "card_application": "办社保卡",
    "card_progress": "查社保卡办理进度",
    "card_activation": "激活社保卡",
    "electronic_card": "申领电子社保卡",
    "job_search": "找工作",
    "unemployment_registration": "办失业登记",
    "vocational_training": "问职业培训",
    "entrepreneurship_support": "问创业扶持",
    "career_guidance": "问职业指导",
    "talent_policy": "问人才政策",
    "professional_title": "问职称评审",
    "skill_certificate": "查技能证书",
    "personnel_archive": "问人事档案",
    "wage_arrears": "反映拖欠工资",
    "labor_arbitration": "申请劳动仲裁",
    "arbitration_progress": "查仲裁进度",
    "labor_contract": "问劳动合同",
    "request_human": "转人工",
}
GUESS_PREFIX = "您是要"


def guess_question(intent: str) -> str:
    return f"{GUESS_PREFIX}{GUESSES[intent]}吗？"


GUESS_DENIED = "好的，请您再说一下要办理什么业务。"
