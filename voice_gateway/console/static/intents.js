// Chinese names of the intents of the 12333 service catalogue (the product spec, shared/spec/service_catalogue.yaml;
// copied here: the consoles read nothing outside the product at run time). An intent not listed shows its name.
export const INTENT_LABELS = {
  // conversation control
  greet: "问候",
  goodbye: "再见",
  thank: "致谢",
  affirm: "肯定",
  deny: "否定",
  request_human: "要求转人工",
  repeat: "要求重复",
  stop: "取消办理",
  ask_capabilities: "询问能办什么",
  complain: "投诉",
  inform: "提供信息",
  out_of_scope: "非人社业务",
  nlu_fallback: "没听懂",
  // 社保办理
  query_pension_contribution: "查询养老保险缴费",
  query_pension_payment: "查询养老金发放",
  pension_certification: "养老金资格认证",
  retirement_age: "退休年龄测算",
  insurance_transfer: "社保转移接续",
  unemployment_benefit: "失业保险金申领",
  work_injury: "工伤认定",
  flexible_employment_insurance: "灵活就业参保",
  contribution_certificate: "社保缴费证明",
  // 社保卡
  card_loss_report: "社保卡挂失",
  card_application: "社保卡申领补办",
  card_progress: "社保卡制卡进度",
  card_activation: "社保卡激活",
  electronic_card: "电子社保卡",
  // 就业服务
  job_search: "求职找工作",
  unemployment_registration: "失业登记",
  vocational_training: "职业技能培训",
  entrepreneurship_support: "创业扶持",
  career_guidance: "职业指导",
  // 人才管理
  talent_policy: "人才政策",
  professional_title: "职称评审",
  skill_certificate: "技能证书查询",
  personnel_archive: "人事档案",
  // 劳动仲裁与维权
  wage_arrears: "拖欠工资",
  labor_arbitration: "劳动仲裁申请",
  arbitration_progress: "仲裁案件进度",
  labor_contract: "劳动合同",
};

// "退休年龄测算" for a known intent, else the name as it is
export function intentLabel(name) {
  return INTENT_LABELS[name] || name || "";
}
