# Collects state keys of every prefix from the stored blocks and saves the node's answers.
import json, sys, urllib.request, urllib.parse, glob, os
N = sys.argv[1]; out = sys.argv[2]
blocks = [json.load(open(f)) for f in sorted(glob.glob(out + '/block-*.json'), key=lambda f: int(f.split('-')[-1][:-5]))]
keys = ['chain/validators', 'chain/info', 'chain/head', 'chain/organisations', 'chain/validator-changes',
        'org/hospital', 'org/pharma', 'gs1-prefix/0614141', 'product/00614141000012',
        'unit/00614141000012/00001', 'unit/00614141000012/00002', 'container/006141410000000012',
        'lot/00614141000012/L1', 'anchor/' + 'a' * 64]
for b in blocks:
    for tx in b['block']['txs']:
        body = tx['body']; p = body['payload']; t = p['type']
        keys += ['member/' + body['sender'], 'nonce/' + body['sender']]
        if t == 'put_records':
            for r in p['records'][:3]:
                keys += ['record/' + r['record'], 'record-version/%s/%010d' % (r['record'], r['version']), 'patient/' + r['patient'],
                         'access-count/' + r['patient'], 'access/%s/%020d' % (r['patient'], 1)]
        if t == 'bind_patient':
            keys += ['patient-ids/' + p['key'], 'consent/' + p['key']]
        if t == 'record_access':
            keys += ['access-request/' + p['access']['request']]
        if t == 'revoke_consent':
            keys += ['grant/' + p['grant']]
        if t == 'approve_validator_change':
            keys += ['governance/proposal/' + p['proposal']]
        if t == 'supply':
            for op in p['ops']:
                if 'device' in op:
                    keys += ['sensor/' + op['device']]
keys = list(dict.fromkeys(keys))
answers = []
for k in keys:
    url = N + '/v1/state/' + urllib.parse.quote(k, safe='/')
    try:
        body = json.load(urllib.request.urlopen(url))
    except urllib.error.HTTPError as e:
        body = {'status': e.code, 'body': json.load(e)}
    answers.append({'key': k, 'answer': body})
json.dump(answers, open(out + '/state.json', 'w'), indent=1, sort_keys=True)
print(len(answers), 'state answers;', sum(1 for a in answers if 'status' in a['answer']), 'absent')
