//! The country this computer is in, from its own settings: the time zone,
//! and failing that the locale's territory. Never from an IP address, never
//! finer than a country, never over the network.
//!
//! The zone table is generated from tzdata's `zone.tab` (public domain).

use std::fs;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::system::{non_empty, read_trimmed};

/// How long a country read from the settings is used before they are read
/// again.
pub const COUNTRY_TTL: Duration = Duration::from_secs(60);

/// The country, read from the settings at most once per [`COUNTRY_TTL`]: a
/// regional installation record carries it, and reading the time zone and
/// locale (the environment, `/etc/timezone`, `/etc/localtime`) for every
/// ingest line would cost system calls per record. A changed time zone
/// shows within a minute.
#[derive(Debug, Default)]
pub struct CountryCache(Mutex<Option<(Instant, Option<String>)>>);

impl CountryCache {
    /// [`country_code`], at most [`COUNTRY_TTL`] old.
    pub fn get(&self) -> Option<String> {
        self.get_with(Instant::now(), country_code)
    }

    fn get_with(&self, now: Instant, read: impl FnOnce() -> Option<String>) -> Option<String> {
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, country)) = &*cached
            && now.saturating_duration_since(*at) < COUNTRY_TTL
        {
            return country.clone();
        }
        let country = read();
        *cached = Some((now, country.clone()));
        country
    }
}

/// The country this computer is in, as ISO 3166-1 alpha-2 ("DE"), derived
/// from the time-zone setting and, failing that, from the locale's territory.
/// Never from an IP address; never finer than a country. None when unknown.
///
/// The zone comes from `$TZ`, else `/etc/timezone`, else the target of the
/// `/etc/localtime` symlink; the locale from the first non-empty of `$LC_ALL`,
/// `$LC_CTYPE`, `$LANG`. Zones without a country (UTC, `Etc/*`) fall back to the
/// locale. Both are user settings, so the answer is a hint, not a proof.
pub fn country_code() -> Option<String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let time_zone = env("TZ")
        .or_else(|| {
            read_trimmed("/etc/timezone")
                .and_then(|s| non_empty(s.lines().next().map(str::to_owned)))
        })
        .or_else(|| {
            fs::read_link("/etc/localtime")
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        });
    let locale = ["LC_ALL", "LC_CTYPE", "LANG"].into_iter().find_map(env);
    country_from(time_zone.as_deref(), locale.as_deref())
}

/// Pure core of [`country_code`].
fn country_from(time_zone: Option<&str>, locale: Option<&str>) -> Option<String> {
    time_zone
        .and_then(zone_name)
        .and_then(country_of_zone)
        .map(str::to_owned)
        .or_else(|| locale.and_then(locale_territory))
}

/// "Europe/Berlin" from ":Europe/Berlin", "/usr/share/zoneinfo/Europe/Berlin",
/// "../usr/share/zoneinfo/posix/Europe/Berlin" and the like.
fn zone_name(tz: &str) -> Option<&str> {
    let tz = tz.trim().trim_start_matches(':');
    let tz = tz.rsplit_once("zoneinfo/").map_or(tz, |(_, zone)| zone);
    let tz = tz
        .strip_prefix("posix/")
        .or_else(|| tz.strip_prefix("right/"))
        .unwrap_or(tz);
    (!tz.is_empty() && !tz.starts_with('/')).then_some(tz)
}

fn country_of_zone(zone: &str) -> Option<&'static str> {
    // Legacy areas that lie wholly inside one country (US/Samoa is in ZONE_ALIASES).
    const AREAS: &[(&str, &str)] = &[
        ("America/Argentina/", "AR"),
        ("America/Indiana/", "US"),
        ("America/Kentucky/", "US"),
        ("Australia/", "AU"),
        ("Brazil/", "BR"),
        ("Canada/", "CA"),
        ("Chile/", "CL"),
        ("Mexico/", "MX"),
        ("US/", "US"),
    ];
    let lookup = |table: &'static [(&'static str, &'static str)]| {
        let index = table.binary_search_by(|(z, _)| (*z).cmp(zone)).ok()?;
        table.get(index).map(|&(_, cc)| cc)
    };
    lookup(ZONE_COUNTRIES)
        .or_else(|| lookup(ZONE_ALIASES))
        .or_else(|| {
            AREAS
                .iter()
                .find(|(area, _)| zone.starts_with(area))
                .map(|&(_, cc)| cc)
        })
}

/// "BR" from "pt_BR.UTF-8", "de_DE@euro" or "en_us"; None for "C", "POSIX",
/// "C.UTF-8" and territories that are not two letters (e.g. "es_419").
fn locale_territory(locale: &str) -> Option<String> {
    let name = locale.trim().split(['.', '@']).next()?;
    let (_, territory) = name.split_once('_')?;
    (territory.len() == 2 && territory.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| territory.to_ascii_uppercase())
}

// The zone tables below were generated from this machine's tzdata 2025b, which is
// in the public domain. Both must stay sorted bytewise for `binary_search_by`.

/// Zone name -> ISO 3166-1 alpha-2 country code, one row per `zone.tab` line.
#[rustfmt::skip]
const ZONE_COUNTRIES: &[(&str, &str)] = &[
    ("Africa/Abidjan", "CI"), ("Africa/Accra", "GH"), ("Africa/Addis_Ababa", "ET"),
    ("Africa/Algiers", "DZ"), ("Africa/Asmara", "ER"), ("Africa/Bamako", "ML"),
    ("Africa/Bangui", "CF"), ("Africa/Banjul", "GM"), ("Africa/Bissau", "GW"),
    ("Africa/Blantyre", "MW"), ("Africa/Brazzaville", "CG"), ("Africa/Bujumbura", "BI"),
    ("Africa/Cairo", "EG"), ("Africa/Casablanca", "MA"), ("Africa/Ceuta", "ES"),
    ("Africa/Conakry", "GN"), ("Africa/Dakar", "SN"), ("Africa/Dar_es_Salaam", "TZ"),
    ("Africa/Djibouti", "DJ"), ("Africa/Douala", "CM"), ("Africa/El_Aaiun", "EH"),
    ("Africa/Freetown", "SL"), ("Africa/Gaborone", "BW"), ("Africa/Harare", "ZW"),
    ("Africa/Johannesburg", "ZA"), ("Africa/Juba", "SS"), ("Africa/Kampala", "UG"),
    ("Africa/Khartoum", "SD"), ("Africa/Kigali", "RW"), ("Africa/Kinshasa", "CD"),
    ("Africa/Lagos", "NG"), ("Africa/Libreville", "GA"), ("Africa/Lome", "TG"),
    ("Africa/Luanda", "AO"), ("Africa/Lubumbashi", "CD"), ("Africa/Lusaka", "ZM"),
    ("Africa/Malabo", "GQ"), ("Africa/Maputo", "MZ"), ("Africa/Maseru", "LS"),
    ("Africa/Mbabane", "SZ"), ("Africa/Mogadishu", "SO"), ("Africa/Monrovia", "LR"),
    ("Africa/Nairobi", "KE"), ("Africa/Ndjamena", "TD"), ("Africa/Niamey", "NE"),
    ("Africa/Nouakchott", "MR"), ("Africa/Ouagadougou", "BF"), ("Africa/Porto-Novo", "BJ"),
    ("Africa/Sao_Tome", "ST"), ("Africa/Tripoli", "LY"), ("Africa/Tunis", "TN"),
    ("Africa/Windhoek", "NA"), ("America/Adak", "US"), ("America/Anchorage", "US"),
    ("America/Anguilla", "AI"), ("America/Antigua", "AG"), ("America/Araguaina", "BR"),
    ("America/Argentina/Buenos_Aires", "AR"), ("America/Argentina/Catamarca", "AR"),
    ("America/Argentina/Cordoba", "AR"), ("America/Argentina/Jujuy", "AR"),
    ("America/Argentina/La_Rioja", "AR"), ("America/Argentina/Mendoza", "AR"),
    ("America/Argentina/Rio_Gallegos", "AR"), ("America/Argentina/Salta", "AR"),
    ("America/Argentina/San_Juan", "AR"), ("America/Argentina/San_Luis", "AR"),
    ("America/Argentina/Tucuman", "AR"), ("America/Argentina/Ushuaia", "AR"),
    ("America/Aruba", "AW"), ("America/Asuncion", "PY"), ("America/Atikokan", "CA"),
    ("America/Bahia", "BR"), ("America/Bahia_Banderas", "MX"), ("America/Barbados", "BB"),
    ("America/Belem", "BR"), ("America/Belize", "BZ"), ("America/Blanc-Sablon", "CA"),
    ("America/Boa_Vista", "BR"), ("America/Bogota", "CO"), ("America/Boise", "US"),
    ("America/Cambridge_Bay", "CA"), ("America/Campo_Grande", "BR"), ("America/Cancun", "MX"),
    ("America/Caracas", "VE"), ("America/Cayenne", "GF"), ("America/Cayman", "KY"),
    ("America/Chicago", "US"), ("America/Chihuahua", "MX"), ("America/Ciudad_Juarez", "MX"),
    ("America/Costa_Rica", "CR"), ("America/Coyhaique", "CL"), ("America/Creston", "CA"),
    ("America/Cuiaba", "BR"), ("America/Curacao", "CW"), ("America/Danmarkshavn", "GL"),
    ("America/Dawson", "CA"), ("America/Dawson_Creek", "CA"), ("America/Denver", "US"),
    ("America/Detroit", "US"), ("America/Dominica", "DM"), ("America/Edmonton", "CA"),
    ("America/Eirunepe", "BR"), ("America/El_Salvador", "SV"), ("America/Fort_Nelson", "CA"),
    ("America/Fortaleza", "BR"), ("America/Glace_Bay", "CA"), ("America/Goose_Bay", "CA"),
    ("America/Grand_Turk", "TC"), ("America/Grenada", "GD"), ("America/Guadeloupe", "GP"),
    ("America/Guatemala", "GT"), ("America/Guayaquil", "EC"), ("America/Guyana", "GY"),
    ("America/Halifax", "CA"), ("America/Havana", "CU"), ("America/Hermosillo", "MX"),
    ("America/Indiana/Indianapolis", "US"), ("America/Indiana/Knox", "US"),
    ("America/Indiana/Marengo", "US"), ("America/Indiana/Petersburg", "US"),
    ("America/Indiana/Tell_City", "US"), ("America/Indiana/Vevay", "US"),
    ("America/Indiana/Vincennes", "US"), ("America/Indiana/Winamac", "US"),
    ("America/Inuvik", "CA"), ("America/Iqaluit", "CA"), ("America/Jamaica", "JM"),
    ("America/Juneau", "US"), ("America/Kentucky/Louisville", "US"),
    ("America/Kentucky/Monticello", "US"), ("America/Kralendijk", "BQ"), ("America/La_Paz", "BO"),
    ("America/Lima", "PE"), ("America/Los_Angeles", "US"), ("America/Lower_Princes", "SX"),
    ("America/Maceio", "BR"), ("America/Managua", "NI"), ("America/Manaus", "BR"),
    ("America/Marigot", "MF"), ("America/Martinique", "MQ"), ("America/Matamoros", "MX"),
    ("America/Mazatlan", "MX"), ("America/Menominee", "US"), ("America/Merida", "MX"),
    ("America/Metlakatla", "US"), ("America/Mexico_City", "MX"), ("America/Miquelon", "PM"),
    ("America/Moncton", "CA"), ("America/Monterrey", "MX"), ("America/Montevideo", "UY"),
    ("America/Montserrat", "MS"), ("America/Nassau", "BS"), ("America/New_York", "US"),
    ("America/Nome", "US"), ("America/Noronha", "BR"), ("America/North_Dakota/Beulah", "US"),
    ("America/North_Dakota/Center", "US"), ("America/North_Dakota/New_Salem", "US"),
    ("America/Nuuk", "GL"), ("America/Ojinaga", "MX"), ("America/Panama", "PA"),
    ("America/Paramaribo", "SR"), ("America/Phoenix", "US"), ("America/Port-au-Prince", "HT"),
    ("America/Port_of_Spain", "TT"), ("America/Porto_Velho", "BR"), ("America/Puerto_Rico", "PR"),
    ("America/Punta_Arenas", "CL"), ("America/Rankin_Inlet", "CA"), ("America/Recife", "BR"),
    ("America/Regina", "CA"), ("America/Resolute", "CA"), ("America/Rio_Branco", "BR"),
    ("America/Santarem", "BR"), ("America/Santiago", "CL"), ("America/Santo_Domingo", "DO"),
    ("America/Sao_Paulo", "BR"), ("America/Scoresbysund", "GL"), ("America/Sitka", "US"),
    ("America/St_Barthelemy", "BL"), ("America/St_Johns", "CA"), ("America/St_Kitts", "KN"),
    ("America/St_Lucia", "LC"), ("America/St_Thomas", "VI"), ("America/St_Vincent", "VC"),
    ("America/Swift_Current", "CA"), ("America/Tegucigalpa", "HN"), ("America/Thule", "GL"),
    ("America/Tijuana", "MX"), ("America/Toronto", "CA"), ("America/Tortola", "VG"),
    ("America/Vancouver", "CA"), ("America/Whitehorse", "CA"), ("America/Winnipeg", "CA"),
    ("America/Yakutat", "US"), ("Antarctica/Casey", "AQ"), ("Antarctica/Davis", "AQ"),
    ("Antarctica/DumontDUrville", "AQ"), ("Antarctica/Macquarie", "AU"),
    ("Antarctica/Mawson", "AQ"), ("Antarctica/McMurdo", "AQ"), ("Antarctica/Palmer", "AQ"),
    ("Antarctica/Rothera", "AQ"), ("Antarctica/Syowa", "AQ"), ("Antarctica/Troll", "AQ"),
    ("Antarctica/Vostok", "AQ"), ("Arctic/Longyearbyen", "SJ"), ("Asia/Aden", "YE"),
    ("Asia/Almaty", "KZ"), ("Asia/Amman", "JO"), ("Asia/Anadyr", "RU"), ("Asia/Aqtau", "KZ"),
    ("Asia/Aqtobe", "KZ"), ("Asia/Ashgabat", "TM"), ("Asia/Atyrau", "KZ"), ("Asia/Baghdad", "IQ"),
    ("Asia/Bahrain", "BH"), ("Asia/Baku", "AZ"), ("Asia/Bangkok", "TH"), ("Asia/Barnaul", "RU"),
    ("Asia/Beirut", "LB"), ("Asia/Bishkek", "KG"), ("Asia/Brunei", "BN"), ("Asia/Chita", "RU"),
    ("Asia/Colombo", "LK"), ("Asia/Damascus", "SY"), ("Asia/Dhaka", "BD"), ("Asia/Dili", "TL"),
    ("Asia/Dubai", "AE"), ("Asia/Dushanbe", "TJ"), ("Asia/Famagusta", "CY"), ("Asia/Gaza", "PS"),
    ("Asia/Hebron", "PS"), ("Asia/Ho_Chi_Minh", "VN"), ("Asia/Hong_Kong", "HK"),
    ("Asia/Hovd", "MN"), ("Asia/Irkutsk", "RU"), ("Asia/Jakarta", "ID"), ("Asia/Jayapura", "ID"),
    ("Asia/Jerusalem", "IL"), ("Asia/Kabul", "AF"), ("Asia/Kamchatka", "RU"),
    ("Asia/Karachi", "PK"), ("Asia/Kathmandu", "NP"), ("Asia/Khandyga", "RU"),
    ("Asia/Kolkata", "IN"), ("Asia/Krasnoyarsk", "RU"), ("Asia/Kuala_Lumpur", "MY"),
    ("Asia/Kuching", "MY"), ("Asia/Kuwait", "KW"), ("Asia/Macau", "MO"), ("Asia/Magadan", "RU"),
    ("Asia/Makassar", "ID"), ("Asia/Manila", "PH"), ("Asia/Muscat", "OM"), ("Asia/Nicosia", "CY"),
    ("Asia/Novokuznetsk", "RU"), ("Asia/Novosibirsk", "RU"), ("Asia/Omsk", "RU"),
    ("Asia/Oral", "KZ"), ("Asia/Phnom_Penh", "KH"), ("Asia/Pontianak", "ID"),
    ("Asia/Pyongyang", "KP"), ("Asia/Qatar", "QA"), ("Asia/Qostanay", "KZ"),
    ("Asia/Qyzylorda", "KZ"), ("Asia/Riyadh", "SA"), ("Asia/Sakhalin", "RU"),
    ("Asia/Samarkand", "UZ"), ("Asia/Seoul", "KR"), ("Asia/Shanghai", "CN"),
    ("Asia/Singapore", "SG"), ("Asia/Srednekolymsk", "RU"), ("Asia/Taipei", "TW"),
    ("Asia/Tashkent", "UZ"), ("Asia/Tbilisi", "GE"), ("Asia/Tehran", "IR"), ("Asia/Thimphu", "BT"),
    ("Asia/Tokyo", "JP"), ("Asia/Tomsk", "RU"), ("Asia/Ulaanbaatar", "MN"), ("Asia/Urumqi", "CN"),
    ("Asia/Ust-Nera", "RU"), ("Asia/Vientiane", "LA"), ("Asia/Vladivostok", "RU"),
    ("Asia/Yakutsk", "RU"), ("Asia/Yangon", "MM"), ("Asia/Yekaterinburg", "RU"),
    ("Asia/Yerevan", "AM"), ("Atlantic/Azores", "PT"), ("Atlantic/Bermuda", "BM"),
    ("Atlantic/Canary", "ES"), ("Atlantic/Cape_Verde", "CV"), ("Atlantic/Faroe", "FO"),
    ("Atlantic/Madeira", "PT"), ("Atlantic/Reykjavik", "IS"), ("Atlantic/South_Georgia", "GS"),
    ("Atlantic/St_Helena", "SH"), ("Atlantic/Stanley", "FK"), ("Australia/Adelaide", "AU"),
    ("Australia/Brisbane", "AU"), ("Australia/Broken_Hill", "AU"), ("Australia/Darwin", "AU"),
    ("Australia/Eucla", "AU"), ("Australia/Hobart", "AU"), ("Australia/Lindeman", "AU"),
    ("Australia/Lord_Howe", "AU"), ("Australia/Melbourne", "AU"), ("Australia/Perth", "AU"),
    ("Australia/Sydney", "AU"), ("Europe/Amsterdam", "NL"), ("Europe/Andorra", "AD"),
    ("Europe/Astrakhan", "RU"), ("Europe/Athens", "GR"), ("Europe/Belgrade", "RS"),
    ("Europe/Berlin", "DE"), ("Europe/Bratislava", "SK"), ("Europe/Brussels", "BE"),
    ("Europe/Bucharest", "RO"), ("Europe/Budapest", "HU"), ("Europe/Busingen", "DE"),
    ("Europe/Chisinau", "MD"), ("Europe/Copenhagen", "DK"), ("Europe/Dublin", "IE"),
    ("Europe/Gibraltar", "GI"), ("Europe/Guernsey", "GG"), ("Europe/Helsinki", "FI"),
    ("Europe/Isle_of_Man", "IM"), ("Europe/Istanbul", "TR"), ("Europe/Jersey", "JE"),
    ("Europe/Kaliningrad", "RU"), ("Europe/Kirov", "RU"), ("Europe/Kyiv", "UA"),
    ("Europe/Lisbon", "PT"), ("Europe/Ljubljana", "SI"), ("Europe/London", "GB"),
    ("Europe/Luxembourg", "LU"), ("Europe/Madrid", "ES"), ("Europe/Malta", "MT"),
    ("Europe/Mariehamn", "AX"), ("Europe/Minsk", "BY"), ("Europe/Monaco", "MC"),
    ("Europe/Moscow", "RU"), ("Europe/Oslo", "NO"), ("Europe/Paris", "FR"),
    ("Europe/Podgorica", "ME"), ("Europe/Prague", "CZ"), ("Europe/Riga", "LV"),
    ("Europe/Rome", "IT"), ("Europe/Samara", "RU"), ("Europe/San_Marino", "SM"),
    ("Europe/Sarajevo", "BA"), ("Europe/Saratov", "RU"), ("Europe/Simferopol", "UA"),
    ("Europe/Skopje", "MK"), ("Europe/Sofia", "BG"), ("Europe/Stockholm", "SE"),
    ("Europe/Tallinn", "EE"), ("Europe/Tirane", "AL"), ("Europe/Ulyanovsk", "RU"),
    ("Europe/Vaduz", "LI"), ("Europe/Vatican", "VA"), ("Europe/Vienna", "AT"),
    ("Europe/Vilnius", "LT"), ("Europe/Volgograd", "RU"), ("Europe/Warsaw", "PL"),
    ("Europe/Zagreb", "HR"), ("Europe/Zurich", "CH"), ("Indian/Antananarivo", "MG"),
    ("Indian/Chagos", "IO"), ("Indian/Christmas", "CX"), ("Indian/Cocos", "CC"),
    ("Indian/Comoro", "KM"), ("Indian/Kerguelen", "TF"), ("Indian/Mahe", "SC"),
    ("Indian/Maldives", "MV"), ("Indian/Mauritius", "MU"), ("Indian/Mayotte", "YT"),
    ("Indian/Reunion", "RE"), ("Pacific/Apia", "WS"), ("Pacific/Auckland", "NZ"),
    ("Pacific/Bougainville", "PG"), ("Pacific/Chatham", "NZ"), ("Pacific/Chuuk", "FM"),
    ("Pacific/Easter", "CL"), ("Pacific/Efate", "VU"), ("Pacific/Fakaofo", "TK"),
    ("Pacific/Fiji", "FJ"), ("Pacific/Funafuti", "TV"), ("Pacific/Galapagos", "EC"),
    ("Pacific/Gambier", "PF"), ("Pacific/Guadalcanal", "SB"), ("Pacific/Guam", "GU"),
    ("Pacific/Honolulu", "US"), ("Pacific/Kanton", "KI"), ("Pacific/Kiritimati", "KI"),
    ("Pacific/Kosrae", "FM"), ("Pacific/Kwajalein", "MH"), ("Pacific/Majuro", "MH"),
    ("Pacific/Marquesas", "PF"), ("Pacific/Midway", "UM"), ("Pacific/Nauru", "NR"),
    ("Pacific/Niue", "NU"), ("Pacific/Norfolk", "NF"), ("Pacific/Noumea", "NC"),
    ("Pacific/Pago_Pago", "AS"), ("Pacific/Palau", "PW"), ("Pacific/Pitcairn", "PN"),
    ("Pacific/Pohnpei", "FM"), ("Pacific/Port_Moresby", "PG"), ("Pacific/Rarotonga", "CK"),
    ("Pacific/Saipan", "MP"), ("Pacific/Tahiti", "PF"), ("Pacific/Tarawa", "KI"),
    ("Pacific/Tongatapu", "TO"), ("Pacific/Wake", "UM"), ("Pacific/Wallis", "WF"),
];

/// Backward-compatible names (tzdata `backward` links) with an unambiguous country.
/// Legacy areas such as `US/*` are matched by prefix in `country_of_zone` instead.
#[rustfmt::skip]
const ZONE_ALIASES: &[(&str, &str)] = &[
    ("Africa/Asmera", "ER"), ("Africa/Timbuktu", "ML"), ("America/Atka", "US"),
    ("America/Buenos_Aires", "AR"), ("America/Catamarca", "AR"), ("America/Coral_Harbour", "CA"),
    ("America/Cordoba", "AR"), ("America/Ensenada", "MX"), ("America/Fort_Wayne", "US"),
    ("America/Godthab", "GL"), ("America/Indianapolis", "US"), ("America/Jujuy", "AR"),
    ("America/Knox_IN", "US"), ("America/Louisville", "US"), ("America/Mendoza", "AR"),
    ("America/Montreal", "CA"), ("America/Nipigon", "CA"), ("America/Pangnirtung", "CA"),
    ("America/Porto_Acre", "BR"), ("America/Rainy_River", "CA"), ("America/Rosario", "AR"),
    ("America/Santa_Isabel", "MX"), ("America/Shiprock", "US"), ("America/Thunder_Bay", "CA"),
    ("America/Virgin", "VI"), ("America/Yellowknife", "CA"), ("Antarctica/South_Pole", "AQ"),
    ("Asia/Ashkhabad", "TM"), ("Asia/Calcutta", "IN"), ("Asia/Choibalsan", "MN"),
    ("Asia/Chongqing", "CN"), ("Asia/Chungking", "CN"), ("Asia/Dacca", "BD"), ("Asia/Harbin", "CN"),
    ("Asia/Istanbul", "TR"), ("Asia/Kashgar", "CN"), ("Asia/Katmandu", "NP"), ("Asia/Macao", "MO"),
    ("Asia/Rangoon", "MM"), ("Asia/Saigon", "VN"), ("Asia/Tel_Aviv", "IL"), ("Asia/Thimbu", "BT"),
    ("Asia/Ujung_Pandang", "ID"), ("Asia/Ulan_Bator", "MN"), ("Atlantic/Faeroe", "FO"),
    ("Atlantic/Jan_Mayen", "SJ"), ("Cuba", "CU"), ("Egypt", "EG"), ("Eire", "IE"),
    ("Europe/Belfast", "GB"), ("Europe/Kiev", "UA"), ("Europe/Nicosia", "CY"),
    ("Europe/Tiraspol", "MD"), ("Europe/Uzhgorod", "UA"), ("Europe/Zaporozhye", "UA"), ("GB", "GB"),
    ("GB-Eire", "GB"), ("Hongkong", "HK"), ("Iceland", "IS"), ("Iran", "IR"), ("Israel", "IL"),
    ("Jamaica", "JM"), ("Japan", "JP"), ("Kwajalein", "MH"), ("Libya", "LY"), ("NZ", "NZ"),
    ("NZ-CHAT", "NZ"), ("Navajo", "US"), ("PRC", "CN"), ("Pacific/Enderbury", "KI"),
    ("Pacific/Johnston", "UM"), ("Pacific/Ponape", "FM"), ("Pacific/Samoa", "AS"),
    ("Pacific/Truk", "FM"), ("Pacific/Yap", "FM"), ("Poland", "PL"), ("Portugal", "PT"),
    ("ROC", "TW"), ("ROK", "KR"), ("Singapore", "SG"), ("Turkey", "TR"), ("US/Samoa", "AS"),
    ("W-SU", "RU"),
];

#[cfg(test)]
mod tests {
    #[test]
    fn the_country_is_read_again_only_once_it_is_a_minute_old() {
        let cache = CountryCache::default();
        let start = Instant::now();
        let reads = std::cell::Cell::new(0);
        let read = |country: &str| {
            reads.set(reads.get() + 1);
            Some(country.to_owned())
        };
        assert_eq!(cache.get_with(start, || read("DE")).as_deref(), Some("DE"));
        let later = start + COUNTRY_TTL - Duration::from_secs(1);
        assert_eq!(cache.get_with(later, || read("FR")).as_deref(), Some("DE"));
        assert_eq!(reads.get(), 1, "read once within the minute");
        let stale = start + COUNTRY_TTL;
        assert_eq!(cache.get_with(stale, || read("FR")).as_deref(), Some("FR"));
        assert_eq!(reads.get(), 2);
    }

    use super::*;

    /// `time zone | locale | expected`; "-" stands for `None`.
    const COUNTRY_CASES: &str = "
Europe/Berlin                              | -                 | DE
America/Sao_Paulo                          | -                 | BR
:Europe/Paris                              | -                 | FR
/usr/share/zoneinfo/Asia/Tokyo             | -                 | JP
../usr/share/zoneinfo/posix/Europe/Rome    | -                 | IT
/var/db/timezone/zoneinfo/America/New_York | -                 | US
Africa/Abidjan                             | -                 | CI
Pacific/Pago_Pago                          | -                 | AS
US/Eastern                                 | -                 | US
US/Samoa                                   | -                 | AS
Asia/Calcutta                              | -                 | IN
Europe/Kiev                                | -                 | UA
Canada/Newfoundland                        | -                 | CA
America/Argentina/ComodRivadavia           | -                 | AR
Iceland                                    | -                 | IS
Asia/Tokyo                                 | en_US.UTF-8       | JP
Etc/UTC                                    | de_DE.UTF-8       | DE
UTC                                        | C.UTF-8           | -
Etc/GMT+5                                  | -                 | -
Zulu                                       | POSIX             | -
Universal                                  | fr_FR             | FR
EST5EDT                                    | en_CA.UTF-8       | CA
europe/berlin                              | -                 | -
garbage!                                   | pt_BR.UTF-8       | BR
/etc/localtime                             | sv_SE             | SE
                                           | it_IT             | IT
-                                          | de_DE@euro        | DE
-                                          | sr_RS.UTF-8@latin | RS
-                                          | en_us.utf8        | US
-                                          | C                 | -
-                                          | es_419.UTF-8      | -
-                                          | en_USA            | -
-                                          | x_1Z              | -
-                                          | -                 | -";

    #[test]
    fn country_from_zone_then_locale() {
        fn opt(s: &str) -> Option<&str> {
            Some(s.trim()).filter(|s| *s != "-")
        }
        for line in COUNTRY_CASES.lines().filter(|l| !l.trim().is_empty()) {
            let cols: Vec<&str> = line.split('|').collect();
            let [zone, locale, want] = cols[..] else {
                panic!("bad case line: {line}");
            };
            let got = country_from(opt(zone), opt(locale));
            assert_eq!(got.as_deref(), opt(want), "case: {line}");
        }
    }

    #[test]
    fn zone_tables_are_sorted_and_valid() {
        let is_cc = |cc: &str| cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_uppercase());
        for table in [ZONE_COUNTRIES, ZONE_ALIASES] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0), "unsorted");
            for (zone, cc) in table {
                assert!(is_cc(cc) && !zone.starts_with("Etc/"), "{zone}");
            }
        }
        assert!(ZONE_COUNTRIES.len() > 400);
        for (alias, _) in ZONE_ALIASES {
            let dup = ZONE_COUNTRIES.binary_search_by(|(z, _)| z.cmp(alias));
            assert!(dup.is_err(), "{alias}");
        }
    }
}
