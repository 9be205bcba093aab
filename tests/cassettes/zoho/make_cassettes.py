"""Writes tests/cassettes/zoho/*.yaml from Zoho's documented example responses (../shared/api/zoho.md).

Run from the repository root: python tests/cassettes/zoho/make_cassettes.py
"""
import json
import yaml

TOKEN = {"uri": "https://accounts.zoho.com/oauth/v2/token", "method": "POST",
         "body": "client_id=1000.CLIENT&client_secret=FILTERED&grant_type=refresh_token&refresh_token=FILTERED",
         "response": {"access_token": "REDACTED", "expires_in": 3600, "api_domain": "https://www.zohoapis.com",
                      "token_type": "Bearer"}}


def interaction(uri, method, response, status=200, body=None, message="OK"):
    headers = {"content-type": ["application/json"]} if response is not None else {}
    return {"request": {"body": body, "headers": {"Authorization": ["FILTERED"]} if "zohoapis" in uri else {},
                        "method": method, "uri": uri},
            "response": {"status": {"code": status, "message": message}, "headers": headers,
                         "body": {"string": json.dumps(response) if response is not None else ""}}}


def token():
    return interaction(TOKEN["uri"], "POST", TOKEN["response"], body=TOKEN["body"])


ORG = {"org": [{"id": "4150868000000225001", "zgid": "808232144", "domain_name": "org808232144", "type": "production",
                "company_name": "zohoo", "country_code": "US", "time_zone": "America/Chicago",
                "currency": "US Dollar - USD", "iso_code": "USD", "max_per_page": 200,
                "license_details": {"paid_expiry": "2025-04-11T17:00:00-07:00", "users_license_purchased": 10,
                                    "trial_type": None, "trial_expiry": None, "paid": True,
                                    "paid_type": "standard", "portal_users_license_purchased": 0}}]}
USERS = {"users": [{"id": "4150868000000225013", "full_name": "Patricia Boyle", "first_name": "Patricia",
                    "last_name": "Boyle", "email": "p.boyle@zylker.com", "status": "active", "confirm": True,
                    "role": {"name": "CEO", "id": "4150868000000026005"},
                    "profile": {"name": "Administrator", "id": "4150868000000026011"}}],
         "info": {"per_page": 200, "count": 1, "page": 1, "more_records": False}}
UPSERT = {"data": [
    {"code": "SUCCESS", "duplicate_field": "Email", "action": "update", "details": {
        "Modified_Time": "2020-10-14T10:31:43+05:30", "Modified_By": {"name": "Patricia Boyle", "id": "4150868000000225013"},
        "Created_Time": "2019-09-11T16:21:15+05:30", "id": "4150868000000376008",
        "Created_By": {"name": "Patricia Boyle", "id": "4150868000000225013"}}, "message": "record updated",
     "status": "success"},
    {"code": "SUCCESS", "duplicate_field": None, "action": "insert", "details": {
        "Modified_Time": "2020-10-14T10:31:43+05:30", "Modified_By": {"name": "Patricia Boyle", "id": "4150868000000225013"},
        "Created_Time": "2020-10-14T10:31:43+05:30", "id": "4150868000003194003",
        "Created_By": {"name": "Patricia Boyle", "id": "4150868000000225013"}}, "message": "record added",
     "status": "success"}]}
ERRORS = {"data": [
    {"code": "INVALID_DATA", "details": {"expected_data_type": "phone", "api_name": "Phone"}, "message": "invalid data",
     "status": "error"},
    {"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "Last_Name", "json_path": "$.data[1].Last_Name"},
     "message": "required field not found", "status": "error"},
    {"code": "DUPLICATE_DATA", "details": {"api_name": "Unique_1", "duplicate_record": {
        "Owner": {"name": "Pranav", "id": "2008662000000454001", "zuid": "75092197"}, "id": "2008662000006256222"},
        "json_path": "$.data[2].Unique_1", "id": "2008662000006256222", "more_records": False},
     "message": "duplicate data", "status": "error"},
    {"code": "SUCCESS", "duplicate_field": None, "action": "insert", "details": {
        "Modified_Time": "2023-05-10T01:10:47-07:00", "Modified_By": {"name": "Patricia Boyle", "id": "5725767000000411001"},
        "Created_Time": "2023-05-10T01:10:47-07:00", "id": "5725767000000524157",
        "Created_By": {"name": "Patricia Boyle", "id": "5725767000000411001"}, "$approval_state": "approved"},
     "message": "record added", "status": "success"}]}
COQL = {"data": [
    {"Last_Name": "Boyle", "Email": "p.boyle@zylker.com", "Modified_Time": "2024-01-20T09:45:00-05:00",
     "id": "4150868000004010001"},
    {"Last_Name": "Smith", "Email": None, "Modified_Time": "2024-01-20T16:02:11+01:00", "id": "4150868000004010002"}],
    "info": {"count": 2, "more_records": False}}
WATCH = {"watch": [{"code": "SUCCESS", "details": {"events": [{"channel_expiry": "2023-08-02T16:59:50-11:00",
         "resource_uri": "https://www.zohoapis.com/crm/v2/Deals", "resource_id": "554023000000000131",
         "resource_name": "Deals", "channel_id": "10000"}]},
         "message": "Successfully subscribed for actions-watch of the given module", "status": "success"}]}

API = "https://www.zohoapis.com"
cassettes = {
    "ping_standard_edition": [token(), interaction(f"{API}/crm/v8/org", "GET", ORG),
                              interaction(f"{API}/crm/v8/users?type=CurrentUser", "GET", USERS)],
    "upsert_update_and_insert": [token(), interaction(f"{API}/crm/v8/Contacts/upsert", "POST", UPSERT)],
    "upsert_per_record_errors": [token(), interaction(f"{API}/crm/v8/Contacts/upsert", "POST", ERRORS, 207,
                                                      message="Multi-Status")],
    "coql_modified_since": [token(), interaction(f"{API}/crm/v8/coql", "POST", COQL)],
    "token_invalid_client": [interaction(TOKEN["uri"], "POST", {"error": "invalid_client"}, body=TOKEN["body"])],
    "watch_enable": [token(), interaction(f"{API}/crm/v8/actions/watch", "POST", WATCH, 201, message="Created")],
}
for name, interactions in cassettes.items():
    with open(f"tests/cassettes/zoho/{name}.yaml", "w") as handle:
        handle.write("# Zoho's documented example responses (see ../../../../shared/api/zoho.md); tokens filtered.\n")
        yaml.safe_dump({"interactions": interactions, "version": 1}, handle, sort_keys=False, width=120)
