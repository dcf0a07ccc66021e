# What Rails' PostgreSQL adapter does on a connection, with Debian's ruby-pg, through a pooler;
# prints one JSON summary on stdout.
#
# Usage: ruby rails_pattern.rb HOST PORT USER PASSWORD DATABASE LAYOUT CONNECTIONS TRANSACTIONS \
#          SCHEMAS
#   LAYOUT threads:     one thread per connection, all at once
#   LAYOUT interleaved: one thread; each round keeps three connections' transactions open at
#                       once, a different three every round, so with a pool of three each
#                       connection's transactions land on different backends in a known way
#
# Each connection k is configured as the adapter's configure_connection does (client_min_messages,
# standard_conforming_strings, intervalstyle, timezone, then `SET search_path TO s<k>, public`
# once), then prepares its statements as the adapter's statement pool does: names a1, a2, a3 in
# order of first use, so the SAME names carry DIFFERENT SQL on different connections (here
# connection k's a1 is `select $1::int + k` when k is even and a text statement when k is odd).
# a3 has the same text everywhere and reads the unqualified table `whoami` (each schema s<k> has
# one holding its name), so it proves that the connection's own search_path applies. Every result
# is checked; a wrong value counts as an error (the first few kept in full). Exit status 1 when
# anything failed, 2 on bad usage. Bounded: connect_timeout, a fixed number of statements, and a
# deadline on joining the threads.
#
# Run by tests/integration/test_ruby_pg.py, which asserts on the summary.

require 'json'
require 'pg'

if ARGV.length != 9
  warn 'usage: ruby rails_pattern.rb HOST PORT USER PASSWORD DATABASE LAYOUT CONNECTIONS ' \
       'TRANSACTIONS SCHEMAS'
  exit 2
end
HOST, PORT, USER, PASSWORD, DATABASE, LAYOUT = ARGV[0..5]
CONNECTIONS, TRANSACTIONS, SCHEMAS = ARGV[6..8].map { |a| Integer(a) }
KEPT_ERRORS = 20

# Counters, backend pids and errors, shared by the threads.
class Report
  attr_reader :errors, :error_count, :checks, :pids, :pids_by_connection, :transactions

  def initialize
    @lock = Mutex.new
    @errors = []
    @error_count = 0
    @checks = 0
    @transactions = 0
    @pids = {}
    @pids_by_connection = Hash.new { |h, k| h[k] = {} }
  end

  def error(where, message, sqlstate = nil)
    @lock.synchronize do
      @error_count += 1
      next if @errors.size >= KEPT_ERRORS

      @errors << { where: where, sqlstate: sqlstate, message: message }
    end
  end

  def check(where, got, want)
    @lock.synchronize { @checks += 1 }
    error(where, "got #{got.inspect}, want #{want.inspect}") unless got == want
  end

  def saw(conn_index, pid)
    @lock.synchronize do
      @pids[pid] = true
      @pids_by_connection[conn_index][pid] = true
    end
  end

  def committed
    @lock.synchronize { @transactions += 1 }
  end
end

REPORT = Report.new

def guarded(where)
  yield
  true
rescue PG::Error => e
  result = e.respond_to?(:result) ? e.result : nil
  state = result&.error_field(PG::Result::PG_DIAG_SQLSTATE)
  REPORT.error(where, e.message.strip, state)
  false
rescue StandardError => e
  REPORT.error(where, "#{e.class}: #{e.message}")
  false
end

# One application connection: its settings, its statements, its transactions.
class RailsConnection
  PROBE_SQL = "select current_schema(), current_setting('search_path'), " \
              '(select name from whoami), pg_backend_pid()'

  attr_reader :index

  def initialize(index)
    @index = index
    @schema = "s#{index % SCHEMAS}"
    @conn = PG.connect(host: HOST, port: PORT, user: USER, password: PASSWORD, dbname: DATABASE,
                       connect_timeout: 10, application_name: "rails-#{index}")
    # ActiveRecord::ConnectionAdapters::PostgreSQLAdapter#configure_connection.
    @conn.exec("SET client_min_messages TO 'warning'")
    @conn.exec('SET standard_conforming_strings = on')
    @conn.exec('SET intervalstyle = iso_8601')
    @conn.exec("SET SESSION timezone TO 'UTC'")
    # schema_search_path= (config :schema_search_path), once per connection.
    @conn.exec("SET search_path TO #{@schema}, public")
    # The statement pool names statements a1, a2, ... in the order this connection first uses
    # them; even and odd connections use theirs in a different order.
    int_sql = "select $1::int + #{index}"
    text_sql = "select $1::text || '-c#{index}'"
    @statements = index.even? ? { int: 'a1', text: 'a2' } : { text: 'a1', int: 'a2' }
    @conn.prepare(@statements.fetch(index.even? ? :int : :text), index.even? ? int_sql : text_sql)
    @conn.prepare(@statements.fetch(index.even? ? :text : :int), index.even? ? text_sql : int_sql)
    @probe_prepared = false
  end

  def where(round)
    "connection #{@index} round #{round}"
  end

  def begin_transaction
    @conn.exec('BEGIN')
  end

  def commit
    @conn.exec('COMMIT')
    REPORT.committed
  end

  # The statements of one unit of work, checked; inside a transaction or in autocommit.
  def work(round)
    w = where(round)
    v = @index * 1000 + round
    REPORT.check("#{w} int", @conn.exec_prepared(@statements[:int], [v]).getvalue(0, 0),
                 (v + @index).to_s)
    REPORT.check("#{w} text", @conn.exec_prepared(@statements[:text], ["r#{round}"]).getvalue(0, 0),
                 "r#{round}-c#{@index}")
    unless @probe_prepared
      # a3 is prepared at its first use, inside a transaction (or not), as the adapter does.
      @conn.prepare('a3', PROBE_SQL)
      @probe_prepared = true
    end
    schema, search_path, whoami, pid = @conn.exec_prepared('a3').values.first
    REPORT.check("#{w} current_schema", schema, @schema)
    REPORT.check("#{w} search_path", search_path, "#{@schema}, public")
    REPORT.check("#{w} whoami", whoami, @schema)
    REPORT.saw(@index, Integer(pid))
    REPORT.check("#{w} SHOW search_path", @conn.exec('SHOW search_path').getvalue(0, 0),
                 "#{@schema}, public")
    REPORT.check("#{w} client_min_messages", @conn.exec('SHOW client_min_messages').getvalue(0, 0),
                 'warning')
    REPORT.check("#{w} intervalstyle", @conn.exec("select interval '1 day 2 hours'").getvalue(0, 0),
                 'P1DT2H')
    REPORT.check("#{w} timezone", @conn.exec('SHOW TimeZone').getvalue(0, 0), 'UTC')
  end

  # A statement that fails inside a transaction, then ROLLBACK: the connection goes on.
  def failing_transaction(round)
    begin_transaction
    begin
      @conn.exec_prepared(@statements[:int], ['not a number'])
      REPORT.error(where(round), 'a bad parameter did not fail')
    rescue PG::InvalidTextRepresentation
      REPORT.check("#{where(round)} status", @conn.transaction_status, PG::PQTRANS_INERROR)
    end
    @conn.exec('ROLLBACK')
  end

  def close
    @conn.close
  end
end

# A connection's rounds: mostly explicit transactions, some autocommit work, a failing one now
# and then (the ActiveRecord pattern of a validation query that raises).
def round_of(conn, round)
  if round % 7 == 3
    conn.failing_transaction(round)
  elsif round.odd?
    conn.work(round)
  else
    conn.begin_transaction
    conn.work(round)
    conn.commit
  end
end

def run_threads
  threads = (0...CONNECTIONS).map do |k|
    Thread.new do
      guarded("connection #{k}") do
        conn = RailsConnection.new(k)
        begin
          TRANSACTIONS.times do |round|
            round_of(conn, round)
            sleep(rand * 0.004)  # let the others' transactions in between
          end
        ensure
          conn.close
        end
      end
    end
  end
  deadline = Time.now + 150
  stuck = threads.count { |t| t.join([deadline - Time.now, 0.1].max).nil? }
  REPORT.error('threads', "#{stuck} threads still running after 150 s") if stuck.positive?
end

def run_interleaved
  conns = []
  guarded('connect') { CONNECTIONS.times { |k| conns << RailsConnection.new(k) } }
  return if conns.size != CONNECTIONS

  TRANSACTIONS.times do |round|
    # Three open transactions at once: connections round, round+1, round+2 (mod CONNECTIONS).
    group = (0...3).map { |i| conns[(round + i) % CONNECTIONS] }
    ok = group.map { |c| guarded(c.where(round)) { c.begin_transaction } }
    group.each_with_index { |c, i| guarded(c.where(round)) { c.work(round) } if ok[i] }
    group.reverse.each_with_index { |c, i| guarded(c.where(round)) { c.commit } if ok.reverse[i] }
  end
ensure
  conns.each(&:close)
end

case LAYOUT
when 'threads' then run_threads
when 'interleaved' then run_interleaved
else
  warn "unknown layout #{LAYOUT}"
  exit 2
end

moved = REPORT.pids_by_connection.values.count { |pids| pids.size > 1 }
puts JSON.generate(layout: LAYOUT, connections: CONNECTIONS, transactions: REPORT.transactions,
                   checks: REPORT.checks, pids: REPORT.pids.keys, moved: moved,
                   error_count: REPORT.error_count, errors: REPORT.errors)
exit(REPORT.error_count.zero? ? 0 : 1)
