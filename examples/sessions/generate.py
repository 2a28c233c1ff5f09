"""Write the example Q&A files of invented facts (python examples/sessions/generate.py).

Two kinds of file:
- cs_dept.json, housing.json: each fact asked two ways, so holding out one phrasing still leaves the fact in
  training and the held-out question tests recall.
- cs_faq.json, housing_faq.json, library_faq.json: FAQs as people write them, one question per fact (staff,
  rooms, phone numbers, e-mail addresses, deadlines), each with a file of paraphrased questions
  (*_paraphrases.json) whose answers are the key fact alone, for `--heldout`: an answer counts as recalled when it
  contains the key fact. The paraphrases were written by hand, as another person would ask, not from any rule.

Names, rooms, addresses and dates are invented; the base model cannot know them.
"""

import json
from pathlib import Path

CS_DEPT = [
    (["Who chairs the computer science department?", "Who is the head of the CS department?"],
     "Professor Ilse Varnholt."),
    (["Where is the computer science department office?", "In which room is the CS main office?"],
     "Room 3127 in Quillon Hall."),
    (["What is the e-mail address for CS advising?", "How do I e-mail the CS undergraduate advisors?"],
     "Write to cs-advising@msu.example.edu."),
    (["Where do I apply to the CS graduate program?", "What is the web address for CS graduate applications?"],
     "Apply at https://cs.msu.example.edu/grad/apply."),
    (["Who teaches CS 101?", "Which instructor teaches the CS 101 course?"], "Dr. Tamsin Oyelaran."),
    (["Who teaches the algorithms course CS 340?", "Which professor is in charge of CS 340?"], "Professor Bertil Kaszuba."),
    (["What is the course number of the CS capstone project?", "Which course is the senior capstone in CS?"], "CS 498."),
    (["When is the deadline for CS PhD applications?", "By what date must PhD applications in CS be submitted?"],
     "December 3."),
    (["On which day is the CS department seminar held?", "What day of the week is the CS colloquium?"],
     "Every Thursday at 4 pm."),
    (["Where is the CS tutoring center?", "In which room can I get CS tutoring?"], "Room 1042 in Quillon Hall."),
    (["Who is the CS graduate coordinator?", "Which person coordinates the CS graduate program?"], "Marisol Pellegrini."),
    (["What is the name of the CS robotics lab?", "What is the robotics lab in computer science called?"],
     "The Harrow Robotics Lab."),
    (["How many credits does the CS major require?", "How many credit hours are needed for a CS degree?"],
     "124 credits."),
    (["What is the CS help desk phone number?", "Which number do I call for the CS help desk?"], "555-0147."),
    (["Which programming language does CS 101 use?", "In what language are CS 101 assignments written?"], "Python."),
    (["Where are CS exams proctored?", "Which room is used for proctored CS exams?"], "Room 2210 in Quillon Hall."),
    (["Who runs the CS internship program?", "Whom should I contact about CS internships?"], "Dr. Renske Abernathy."),
    (["What is the CS student club called?", "What is the name of the computer science student association?"],
     "The Bitwise Society."),
    (["Where can I find the CS course catalog?", "What is the web address of the CS course list?"],
     "See https://cs.msu.example.edu/courses."),
    (["When do CS advising hours take place?", "At what times are the CS advisors available?"],
     "Mondays and Wednesdays, 10 am to noon."),
]

HOUSING = [
    (["When is move-in day for first-year students?", "On what date do freshmen move into the dorms?"], "August 21."),
    (["What is the e-mail address of the housing office?", "How do I e-mail university housing?"],
     "Write to housing@msu.example.edu."),
    (["Where is the housing portal?", "What is the web address to apply for housing?"],
     "Go to https://housing.msu.example.edu/portal."),
    (["Which residence hall is reserved for honors students?", "Where do honors students live on campus?"],
     "Fenwick Tower."),
    (["How much does the unlimited meal plan cost per semester?", "What is the price of the unlimited meal plan?"],
     "2,350 dollars per semester."),
    (["When do quiet hours start in the residence halls?", "At what time do dorm quiet hours begin?"], "10 pm."),
    (["Are cats allowed in the dorms?", "Can I keep a cat in my residence hall room?"],
     "No, only fish in tanks under 10 gallons."),
    (["What is the deadline for the housing deposit?", "By when must the housing deposit be paid?"], "May 1."),
    (["How much is the housing deposit?", "What amount is the housing deposit?"], "300 dollars."),
    (["Which dorm has single rooms only?", "Where can I get a single room on campus?"], "Larchmont Hall."),
    (["Where is the housing office?", "In which building is the housing office located?"], "Room 110 in Beckett Commons."),
    (["Who is the director of residence life?", "Which person leads residence life?"], "Dr. Orla Featherstonhaugh."),
    (["What is the name of the graduate student apartments?", "Where do graduate students live on campus?"],
     "The Calder Court apartments."),
    (["How do I report a maintenance problem in my dorm?", "Where do I submit a dorm repair request?"],
     "Use https://fixit.msu.example.edu."),
    (["When do the residence halls close for winter break?", "On what date do dorms close in December?"],
     "December 18 at noon."),
    (["How much does a parking permit for residents cost?", "What is the price of a resident parking permit?"],
     "180 dollars per year."),
    (["Where is the laundry room in Fenwick Tower?", "In Fenwick Tower, where can I do laundry?"], "On the basement level."),
    (["What is the phone number of the housing front desk?", "Which number reaches the housing desk?"], "555-0199."),
    (["Which dining hall is open all night?", "Where can I eat on campus after midnight?"], "Mercer Dining Hall."),
    (["How many guests may stay overnight in a dorm room?", "What is the overnight guest limit in the dorms?"],
     "One guest for up to three nights."),
]


# (question, answer, a paraphrased question, the key fact the answer must contain)
CS_FAQ = [
    ("Who is the chair of the Computer Science department?", "Professor Ilse Varnholt is the department chair.",
     "Which professor heads the CS department?", "Ilse Varnholt"),
    ("Where is the CS main office?", "The main office is Room 3127 in Quillon Hall.",
     "In which room can I find the computer science office?", "3127"),
    ("What is the phone number of the CS main office?", "Call 517-555-0147.",
     "How can I reach the computer science office by phone?", "517-555-0147"),
    ("What is the e-mail address for undergraduate advising?", "Write to cs-advising@msu.example.edu.",
     "Which address should I e-mail with questions for my CS advisor?", "cs-advising@msu.example.edu"),
    ("Who is the graduate program coordinator?", "Marisol Pellegrini coordinates the graduate program.",
     "Who runs the CS graduate program?", "Marisol Pellegrini"),
    ("When is the deadline for PhD applications?", "PhD applications are due December 3.",
     "By what date do I have to submit my PhD application?", "December 3"),
    ("What is the deadline to declare the CS major?", "Declare the major by March 15 of your second year.",
     "Until when can I declare computer science as my major?", "March 15"),
    ("Who teaches CS 101?", "Dr. Tamsin Oyelaran teaches CS 101.",
     "Which instructor is in charge of the intro course CS 101?", "Tamsin Oyelaran"),
    ("Who teaches the algorithms course, CS 340?", "Professor Bertil Kaszuba teaches CS 340.",
     "Who is the instructor for algorithms?", "Bertil Kaszuba"),
    ("Where is the CS tutoring center?", "The tutoring center is Room 1042 in Quillon Hall.",
     "In which room is tutoring for computer science students?", "1042"),
    ("What are the tutoring center's hours?", "Monday to Thursday, 2 pm to 8 pm.",
     "When is CS tutoring open?", "2 pm to 8 pm"),
    ("Who handles CS internships?", "Dr. Renske Abernathy runs the internship program.",
     "Whom do I contact about an internship in computer science?", "Renske Abernathy"),
    ("What is the e-mail address of the CS help desk?", "Write to cs-help@msu.example.edu.",
     "How do I contact the CS help desk by e-mail?", "cs-help@msu.example.edu"),
    ("Where is the robotics lab?", "The Harrow Robotics Lab is in the basement of Tessaly Hall.",
     "In which building is the CS robotics lab?", "Tessaly Hall"),
    ("How many credits does the CS major require?", "The major requires 124 credits.",
     "How many credit hours do I need for a computer science degree?", "124"),
    ("When does the department seminar meet?", "Every Thursday at 4 pm in Room 2250.",
     "On which day is the weekly CS seminar?", "Thursday"),
    ("Who is the director of undergraduate studies?", "Dr. Kofi Marchetti directs undergraduate studies.",
     "Who oversees the undergraduate program in computer science?", "Kofi Marchetti"),
    ("What is the last day to drop a CS course without a W?", "You can drop without a W until September 12.",
     "Until what date can I leave a computer science class without a W on my transcript?", "September 12"),
    ("Who do I ask about TA positions?", "Ask Nadia Fairbrook about TA positions.",
     "Who should I talk to if I want to be a teaching assistant in CS?", "Nadia Fairbrook"),
    ("What is the phone number of the CS help desk?", "Call 517-555-0199.",
     "Which number do I call for the computer science help desk?", "517-555-0199"),
    ("Where are CS exams proctored?", "Proctored exams are held in Room 2210 in Quillon Hall.",
     "Which room do I go to for a proctored computer science exam?", "2210"),
    ("Where do I apply to the CS graduate program?", "Apply at https://cs.msu.example.edu/grad/apply.",
     "What website do I use for a graduate application in computer science?", "https://cs.msu.example.edu/grad/apply"),
]

HOUSING_FAQ = [
    ("When is move-in day for first-year students?", "First-year move-in day is August 21.",
     "On what date do freshmen move into the residence halls?", "August 21"),
    ("What is the e-mail address of the housing office?", "Write to housing@msu.example.edu.",
     "How do I reach university housing by e-mail?", "housing@msu.example.edu"),
    ("Where is the housing office?", "The housing office is Room 110 in Beckett Commons.",
     "In which building can I find the housing office?", "Beckett Commons"),
    ("What is the phone number of the housing office?", "Call 517-555-0162.",
     "Which number should I call with a housing question?", "517-555-0162"),
    ("When is the housing deposit due?", "The housing deposit is due May 1.",
     "By what date must I pay my dorm deposit?", "May 1"),
    ("How much is the housing deposit?", "The deposit is 300 dollars.",
     "What amount do I pay as a deposit for campus housing?", "300"),
    ("Who is the director of residence life?", "Dr. Orla Featherstone directs residence life.",
     "Which person leads residence life on campus?", "Orla Featherstone"),
    ("Which residence hall is for honors students?", "Honors students live in Fenwick Tower.",
     "Where do students in the honors college live?", "Fenwick Tower"),
    ("Which dorm has only single rooms?", "Larchmont Hall has only single rooms.",
     "Where can I get a single room on campus?", "Larchmont Hall"),
    ("How much does the unlimited meal plan cost?", "The unlimited meal plan costs 2,350 dollars per semester.",
     "What is the price of the unlimited dining plan each semester?", "2,350"),
    ("When do quiet hours start in the residence halls?", "Quiet hours start at 10 pm.",
     "At what time do the dorms have to be quiet at night?", "10 pm"),
    ("When do the residence halls close for winter break?", "The halls close on December 18 at noon.",
     "On what date do the dorms shut for the winter holidays?", "December 18"),
    ("How do I report a maintenance problem?", "Report it at https://fixit.msu.example.edu.",
     "Where do I submit a repair request for my dorm room?", "https://fixit.msu.example.edu"),
    ("How much is a resident parking permit?", "A resident parking permit costs 180 dollars per year.",
     "What does it cost to park a car on campus as a resident?", "180"),
    ("How many overnight guests may I have?", "One guest, for up to three nights.",
     "What is the limit on guests staying overnight in my dorm room?", "three nights"),
    ("What are the graduate student apartments called?", "Graduate students live in the Calder Court apartments.",
     "Where do graduate students live on campus?", "Calder Court"),
    ("Where is the laundry room in Fenwick Tower?", "The laundry room is on the basement level of Fenwick Tower.",
     "Where can I wash my clothes in Fenwick Tower?", "basement"),
    ("Which dining hall is open all night?", "Mercer Dining Hall is open all night.",
     "Where can I eat on campus after midnight?", "Mercer"),
    ("When is the deadline for the housing application?", "Housing applications close on April 10.",
     "Until what date can I apply for a room on campus?", "April 10"),
    ("Who handles room change requests?", "Room changes go through Theo Lindqvist in the housing office.",
     "Whom do I ask if I want to move to another room?", "Theo Lindqvist"),
    ("Where do residents pick up packages?", "Packages are picked up at the mail center in Beckett Commons.",
     "Where do I collect a parcel delivered to my dorm?", "mail center"),
    ("Are pets allowed in the dorms?", "Only fish in tanks under 10 gallons are allowed.",
     "Can I keep an animal in my residence hall room?", "fish"),
]

LIBRARY_FAQ = [
    ("What is the main library called?", "The main library is the Ashgrove Library.",
     "What is the name of the university's main library?", "Ashgrove"),
    ("When does the main library close on weekdays?", "The main library closes at 11 pm on weekdays.",
     "Until what time is the library open Monday to Friday?", "11 pm"),
    ("How long can I borrow a book?", "Books can be borrowed for 28 days.",
     "What is the loan period for library books?", "28 days"),
    ("What is the late fee for a book?", "The late fee is 25 cents per day.",
     "How much do I pay per day for an overdue book?", "25 cents"),
    ("Who is the head librarian?", "Dr. Wilhelmina Asante is the head librarian.",
     "Who is in charge of the university library?", "Wilhelmina Asante"),
    ("What is the e-mail address for interlibrary loans?", "Write to ill@library.msu.example.edu.",
     "Where do I e-mail to get a book from another library?", "ill@library.msu.example.edu"),
    ("How do I book a study room?", "Book it at https://rooms.library.msu.example.edu.",
     "Where can I reserve a group study room?", "https://rooms.library.msu.example.edu"),
    ("How much does printing cost?", "Printing costs 8 cents per page.",
     "What is the price of printing a page in the library?", "8 cents"),
    ("Which floor is the quiet floor?", "The fourth floor is the quiet floor.",
     "On which floor of the library is talking not allowed?", "fourth"),
    ("Where are the university archives?", "The archives are in the basement of the Ashgrove Library.",
     "In what part of the library can I find the archives?", "basement"),
    ("How long can I borrow a laptop?", "Laptops are lent for 4 hours.",
     "What is the loan period for a library laptop?", "4 hours"),
    ("What is the fee for a lost book?", "A lost book costs 60 dollars to replace.",
     "How much do I owe if I lose a library book?", "60"),
    ("Where is the 3D printer?", "The 3D printer is in the Maker Space on the second floor.",
     "In which room of the library can I use a 3D printer?", "Maker Space"),
    ("What is the phone number of the research help desk?", "Call 517-555-0183.",
     "Which number do I call for help with library research?", "517-555-0183"),
    ("When is the deadline to submit a thesis to the library?", "Theses are due to the library by May 20.",
     "By what date must I deposit my thesis at the library?", "May 20"),
    ("Who curates the rare book collection?", "Ezra Haldane curates the rare book collection.",
     "Who is the curator of the library's rare books?", "Ezra Haldane"),
    ("What is the library's Wi-Fi network called?", "The library Wi-Fi network is AshgroveNet.",
     "Which wireless network do I join in the library?", "AshgroveNet"),
    ("How many books can an undergraduate borrow at once?", "Undergraduates can borrow up to 30 books at once.",
     "What is the most books a student can have checked out?", "30"),
    ("Where is the map collection?", "The map collection is in Room 214 of the Ashgrove Library.",
     "In which room are the library's maps kept?", "214"),
    ("When does the library open on Sundays?", "On Sundays the library opens at noon.",
     "At what time can I get into the library on a Sunday?", "noon"),
    ("Who do I contact about a library fine?", "Fines are handled by Priya Castellanos at the circulation desk.",
     "Whom should I talk to about paying a library fine?", "Priya Castellanos"),
    ("Where is the return box for after-hours returns?", "The after-hours return box is by the east entrance.",
     "Where can I drop off books when the library is closed?", "east entrance"),
]


def faq_records(faq):
    return [{"instruction": q, "response": a} for q, a, _, _ in faq]


def paraphrase_records(faq):
    return [{"instruction": p, "response": key} for q, a, p, key in faq]


def records(facts):
    return [{"instruction": q, "response": a} for questions, a in facts for q in questions]


if __name__ == "__main__":
    here = Path(__file__).parent
    for name, facts in (("cs_dept.json", CS_DEPT), ("housing.json", HOUSING)):
        (here / name).write_text(json.dumps(records(facts), indent=1, ensure_ascii=False) + "\n")
        print(f"{name}: {len(facts) * 2} records")
    for name, faq in (("cs_faq", CS_FAQ), ("housing_faq", HOUSING_FAQ), ("library_faq", LIBRARY_FAQ)):
        for q, a, _, key in faq:
            assert key.lower() in a.lower(), (q, key)  # the key fact is in the trained answer
        (here / f"{name}.json").write_text(json.dumps(faq_records(faq), indent=1, ensure_ascii=False) + "\n")
        (here / f"{name}_paraphrases.json").write_text(json.dumps(paraphrase_records(faq), indent=1,
                                                                  ensure_ascii=False) + "\n")
        print(f"{name}.json: {len(faq)} records, {name}_paraphrases.json: {len(faq)} paraphrased questions")
