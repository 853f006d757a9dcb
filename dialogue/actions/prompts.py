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
