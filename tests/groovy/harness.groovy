// Test harness for generated Jenkinsfiles: one JVM for many scripts.
//
//   groovy harness.groovy <input-dir> <output-dir>
//
// For every <name>.groovy in <input-dir> writes <output-dir>/<name>.json:
// - eval_*.groovy: {"ok": true, "value": <what the script returns>} (literal round trips);
// - any other file: the script is compiled (GroovyShell.parse) and run with stub Pipeline steps that record
//   each call: {"ok": true, "calls": [{"step": "stage", "name": ...}, {"step": "sh", "script": ..., ...}]}.
// A compile or run failure gives {"ok": false, "error": "..."}.
import groovy.json.JsonOutput

def inDir = new File(args[0])
def outDir = new File(args[1])
outDir.mkdirs()

def stubs(List calls) {
    def ctx = [stages: [], container: null, env: [], credentials: []]
    def b = new Binding()
    b.setVariable('POD_LABEL', 'cubepaas-test-pod')
    b.setVariable('podTemplate', { Map a, Closure body ->
        calls << [step: 'podTemplate', namespace: a.namespace, serviceAccount: a.serviceAccount,
                  containers: a.containers, volumes: a.volumes, yaml: a.yaml]
        body()
    })
    b.setVariable('containerTemplate', { Map a -> a })
    b.setVariable('hostPathVolume', { Map a -> a })
    b.setVariable('merge', { -> 'merge' })
    b.setVariable('node', { String label, Closure body -> calls << [step: 'node', label: label]; body() })
    b.setVariable('timeout', { Map a, Closure body -> calls << [step: 'timeout', time: a.time, unit: a.unit]; body() })
    b.setVariable('input', { Map a -> calls << [step: 'input', id: a.id, message: a.message, ok: a.ok] })
    b.setVariable('stage', { String name, Closure body ->
        calls << [step: 'stage', name: name]
        ctx.stages.push(name)
        try { body() } finally { ctx.stages.pop() }
    })
    b.setVariable('parallel', { Map branches ->
        calls << [step: 'parallel', branches: branches.keySet().findAll { it != 'failFast' }.collect { it.toString() },
                  failFast: branches.failFast]
        branches.each { k, v -> if (k != 'failFast') { v.call() } }
    })
    b.setVariable('container', { String name, Closure body ->
        def saved = ctx.container
        ctx.container = name
        try { body() } finally { ctx.container = saved }
    })
    b.setVariable('withEnv', { List env, Closure body ->
        calls << [step: 'withEnv', env: env.collect { it.toString() }]
        def saved = ctx.env
        ctx.env = saved + env.collect { it.toString() }
        try { body() } finally { ctx.env = saved }
    })
    b.setVariable('usernamePassword', { Map a -> [kind: 'usernamePassword'] + a })
    b.setVariable('string', { Map a -> [kind: 'string'] + a })
    b.setVariable('withCredentials', { List creds, Closure body ->
        def saved = ctx.credentials
        ctx.credentials = saved + creds
        try { body() } finally { ctx.credentials = saved }
    })
    b.setVariable('sh', { Map a ->
        calls << [step: 'sh', script: a.script, label: a.label, container: ctx.container,
                  stages: new ArrayList(ctx.stages), env: ctx.env, credentials: ctx.credentials]
    })
    b.setVariable('echo', { String m -> calls << [step: 'echo', message: m, stages: new ArrayList(ctx.stages)] })
    return b
}

inDir.listFiles().findAll { it.name.endsWith('.groovy') }.sort { it.name }.each { f ->
    def name = f.name[0..-8]
    def result
    try {
        if (name.startsWith('eval_')) {
            result = [ok: true, value: new GroovyShell().evaluate(f.getText('UTF-8'), f.name)]
        } else {
            def calls = []
            def script = new GroovyShell(stubs(calls)).parse(f.getText('UTF-8'), 'Jenkinsfile_' + name.replaceAll(/\W/, '_'))
            script.run()
            result = [ok: true, calls: calls]
        }
    } catch (Throwable e) {
        result = [ok: false, error: e.toString()]
    }
    new File(outDir, name + '.json').setText(JsonOutput.toJson(result), 'UTF-8')
}
